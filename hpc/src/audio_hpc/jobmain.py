"""One ``main()`` for the job entry points: logging, and named exit codes for the errors a job
can end with, so that every step's sbatch log and SLURM ExitCode read the same way."""
from __future__ import annotations

import enum
import logging
import sys
from collections.abc import Callable, Sequence


class ExitCode(enum.IntEnum):
    """What a job's exit status means (SLURM shows it as ``ExitCode=<n>:0``)."""

    OK = 0
    FAILED = 1        # the step ran and failed (e.g. the transfer service refused)
    BAD_INPUT = 2     # request, manifest, shard index or plan id is wrong: fix and rerun
    ENGINE_START = 3  # the transcription engine cannot load (model missing, no GPU, ...)
    STAGING_FULL = 4  # the staging filesystem is full; the retry resumes after the last line


def run_job(name: str, step: Callable[[], None],
            errors: Sequence[tuple[type[BaseException], ExitCode]]) -> int:
    """Run ``step()``; on an error listed in ``errors`` (first match wins) log it and return
    its exit code, so each entry point declares what its failures mean in one table."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        step()
    except tuple(kind for kind, _ in errors) as exc:
        code = next(code for kind, code in errors if isinstance(exc, kind))
        logging.getLogger(name).error("%s stopped, exit %d (%s): %s", name, code,
                                      code.name.lower().replace("_", " "), exc)
        return int(code)
    return int(ExitCode.OK)
