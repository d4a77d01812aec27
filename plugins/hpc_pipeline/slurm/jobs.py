"""Job rows and the rules for naming, finding and selecting them."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any

from hpc_pipeline.slurm.states import MAY_BE_REQUEUED


@dataclass(frozen=True)
class JobState:
    """One job, or one index of a job array, as SLURM reports it."""

    job_id: str  # "12" or "12_3": what scancel/sacct accept
    array_job_id: str  # "12" for both
    array_index: int | None
    name: str
    state: str  # long name, reason stripped: "CANCELLED", not "CANCELLED by 1001"
    exit_code: str  # "rc:signal", e.g. "3:0"
    node: str | None
    elapsed_s: int | None
    alloc_tres: str
    gpus: int
    stdout: str | None = None  # only squeue reports it
    source: str = "sacct"
    submit_time: str | None = None  # cluster local time "YYYY-MM-DDTHH:MM:SS"
    start_time: str | None = None  # None while pending; queue wait = start - submit
    reason: str = ""  # why it waits (Priority, Resources, ...); "" when none
    # The attempt SLURM requeued this job after, as accounting still shows it until the job
    # starts again: its state (NODE_FAIL, PREEMPTED) and node; "" / None when none.
    prior_state: str = ""
    prior_node: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SiteLimits:
    """The controller's limits on arrays (``scontrol show config``).

    ``max_array_size``: array indices must be below it (an index value, not a count).
    ``max_job_count``: jobs the controller holds at once; every array index counts as one.
    """

    max_array_size: int
    max_job_count: int


def job_name(prefix: str, step: str, day: str, run_id: str) -> str:
    """Deterministic per (step, day, DAG run): what reattach looks for."""
    return f"{prefix}-{step}-{day}-{hashlib.sha1(run_id.encode()).hexdigest()[:8]}"


def check_job_name(name: str) -> str:
    """SLURM takes ``--name`` filters as comma lists, so a comma would make a job unfindable
    (no reattach); control characters would break line-based parsing."""
    if not name or "," in name or any(ord(c) < 32 for c in name):
        raise ValueError(f"job name must be non-empty, without commas or control chars: {name!r}")
    return name


def expand_job_id(raw: str) -> list[tuple[str, int | None]]:
    """``"12"`` -> ``[("12", None)]``; ``"12_[0-3%2]"``/``"12_1"`` -> per-index pairs."""
    base, _, idx = raw.partition("_")
    if not idx:
        return [(base, None)]
    if not idx.startswith("["):
        return [(base, int(idx))]
    indices: list[int] = []
    for part in idx.strip("[]").split("%")[0].split(","):
        lo, _, rest = part.partition("-")
        hi, _, step = rest.partition(":")
        indices.extend(range(int(lo), int(hi or lo) + 1, int(step or 1)))
    return [(base, i) for i in indices]


def with_offsets(jobs: Iterable[JobState], offsets: dict[str, int]) -> list[JobState]:
    """Array indices shifted by their job's offset (a day's array split into submissions
    whose SLURM indices restart at 0); ``job_id`` keeps SLURM's own ``<id>_<index>``."""
    return [
        replace(j, array_index=j.array_index + offsets[j.array_job_id])
        if j.array_index is not None and offsets.get(j.array_job_id)
        else j
        for j in jobs
    ]


def newest_first(jobs: Iterable[JobState]) -> list[JobState]:
    return sorted(jobs, key=lambda j: (int(j.array_job_id), j.array_index or 0), reverse=True)


def latest_runs(jobs: Iterable[JobState]) -> list[JobState]:
    """The newest job per (job name, array index), by name then index.

    A retry resubmits failed indices under the same name, so its job supersedes the failed
    one for those indices; jobs with other names (independent jobs) are judged separately.
    slurmdbd stores '"' as '`', hence the normalised name.
    """
    latest: dict[tuple[str, int | None], JobState] = {}
    for job in newest_first(jobs):
        latest.setdefault((job.name.replace('"', "`"), job.array_index), job)
    return [latest[k] for k in sorted(latest, key=lambda k: (k[0], k[1] or 0))]


def merge(primary: list[JobState], secondary: list[JobState]) -> list[JobState]:
    """``primary`` plus the rows of ``secondary`` for (job, index) pairs it lacks."""
    seen = {(j.array_job_id, j.array_index) for j in primary}
    return newest_first(
        primary + [j for j in secondary if (j.array_job_id, j.array_index) not in seen]
    )


def reconcile(accounting: list[JobState], controller: list[JobState]) -> list[JobState]:
    """One list from sacct's and squeue's rows: the controller's win; accounting's per-index
    rows stay for indices the controller did not list (under load it can miss one), but not
    its unindexed row of a job the controller answered for (accounting's lag).

    Where accounting shows an attempt that ended in a state SLURM requeues after
    (``NODE_FAIL``, ``PREEMPTED``) and the controller shows the job again in another state,
    the controller's row keeps that attempt as ``prior_state`` / ``prior_node``."""
    answered = {j.array_job_id for j in controller}
    ended = {(j.array_job_id, j.array_index): j for j in accounting if j.state in MAY_BE_REQUEUED}
    controller = [
        replace(j, prior_state=old.state, prior_node=old.node)
        if (old := ended.get((j.array_job_id, j.array_index))) is not None and j.state != old.state
        else j
        for j in controller
    ]
    return merge(
        controller,
        [j for j in accounting if j.array_job_id not in answered or j.array_index is not None],
    )


def log_path(pattern: str, job: JobState) -> str:
    """Fill the ``%A``/``%a``/``%j`` of an ``--output`` pattern for one job or array index
    (SLURM's own index, from ``job_id``: ``array_index`` may carry a split's offset)."""
    values = {
        "A": job.array_job_id,
        "a": job.job_id.partition("_")[2],
        "j": job.array_job_id if job.array_index is None else job.job_id,
        "%": "%",
    }
    return re.sub(r"%([Aaj%])", lambda m: values[m.group(1)], pattern)
