"""What a SLURM command can end with, as seen by its caller."""

from __future__ import annotations

import re


class SlurmError(Exception):
    """A SLURM command answered with an error (bad option, unknown partition, ...)."""


class SlurmUnavailable(SlurmError):
    """Neither sacct nor squeue could report on the jobs: the controller is unreachable, or
    the SSH session ended before the command reported an exit status."""


class SlurmRejected(SlurmError):
    """SLURM refused a submission for what it asks (an unknown partition, account or QOS, a
    gres or node configuration no node has, ...): submitting it again cannot help.

    ``reason`` is SLURM's own message (``Invalid partition name specified``)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class LoginUnreachable(ConnectionError):
    """No SSH session to the login node: host, port and the cause in the message. A
    ``ConnectionError`` (an ``OSError``), so every caller that rides out transport failures
    (the trigger's polls) still does."""


# sbatch's refusals that name the request itself (slurm_strerror texts, 22.05 to 25.x, and
# sbatch's own option checks). Anything else (controller unreachable, busy, a submit limit
# of the QOS) may pass on a later try.
_REQUEST_REFUSED = re.compile(
    r"invalid partition|no partition specified|invalid account|invalid qos|"
    r"invalid generic resource|invalid gres|invalid feature|invalid node name|"
    r"invalid job array|invalid licen[sc]e|invalid dependency|job dependency problem|"
    r"requested node configuration is not available|"
    r"requested partition configuration not available|"
    r"requested nodes? .*not in this partition|node count specification invalid|"
    r"cpu count specification invalid|task count specification invalid|"
    r"more processors requested than permitted|memory specification can not be satisfied|"
    r"memory required by task is not available|requested time limit is invalid|"
    r"access/permission denied|not permitted to use this partition|"
    r"invalid (--)?\w+ specification|unable to open file",
    re.IGNORECASE,
)


def sbatch_refusal(stderr: str) -> str | None:
    """SLURM's reason when sbatch refused the request itself (never runnable as asked), e.g.
    ``Invalid partition name specified``; None when a later try may pass."""
    if not _REQUEST_REFUSED.search(stderr):
        return None
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    final = [ln for ln in lines if "submission failed:" in ln.lower()]
    line = (final or [ln for ln in lines if _REQUEST_REFUSED.search(ln)])[0]
    return re.sub(r"^(sbatch: )?(error: )?(batch job submission failed: )?", "", line, flags=re.I)
