"""Pending jobs that SLURM will not start as submitted, and the limit on how long one may wait.

SLURM accepts some requests it can never run, or not until an admin acts: the job pends,
with a reason that says so (``BadConstraints``, ``DependencyNeverSatisfied``,
``PartitionTimeLimit``, ``ReqNodeNotAvail``, ``JobHeldAdmin``, ...). Waiting on such a job
is waiting forever. The trigger tracks, per job, since when it has pended for such a reason
(:class:`PendingClock`) and, past the site's ``max_pending_s``, cancels the step's jobs and
fails the task naming SLURM's reason (:func:`stuck_message`).

Ordinary queueing (``Priority``, ``Resources``, ``Dependency``, ``BeginTime``,
``JobArrayTaskLimit``, group limits of an account or QOS, ...) is never limited, nor is a
reason this table does not know (a future SLURM's): both wait, as unknown states do.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from hpc_pipeline.slurm.jobs import JobState

# Reason (its first word: squeue writes "ReqNodeNotAvail, UnavailableNodes:c1") -> what it
# means for this job. Names from SLURM's job_reason_string (22.05 to 25.x).
BLOCKED: dict[str, str] = {
    "BadConstraints": "the job's constraints (features, gres, node counts) cannot be satisfied",
    "DependencyNeverSatisfied": "it depends on a job that ended in a way that can never "
    "satisfy the dependency",
    "PartitionTimeLimit": "its time limit exceeds the partition's",
    "PartitionNodeLimit": "its node count is outside the partition's limits, or the nodes it "
    "needs are DOWN or DRAINED",
    "PartitionConfig": "it asks for more than the partition's configuration allows",
    "PartitionDown": "the partition is DOWN",
    "PartitionInactive": "the partition is INACTIVE",
    "ReqNodeNotAvail": "the nodes it needs are down, drained or reserved",
    "NodeDown": "a node it needs is down",
    "InvalidAccount": "its account is invalid",
    "InvalidQOS": "its QOS is invalid",
    "QOSNotAllowed": "its QOS is not allowed in this partition or for this account",
    "AccountNotAllowed": "its account is not allowed in this partition",
    "JobHeldAdmin": "an administrator holds it",
    "JobHeldUser": "it is held (scontrol hold / sbatch --hold); `scontrol release` it",
    "JobHoldMaxRequeue": "it was requeued too often and is held",
    "ReservationDeleted": "the reservation it asked for was deleted",
    "FrontEndDown": "no front end node is available",
}
# Per-job maxima of a QOS or association (QOSMaxWallDurationPerJobLimit,
# AssocMaxGRESPerJob, ...) and unmet QOS minima: the request itself is over the limit.
_BLOCKED_FAMILIES = (
    (re.compile(r"(QOS|Assoc)Max\w*PerJob\w*\Z"), "it asks for more than a per-job limit of "
     "its QOS or account allows"),
    (re.compile(r"QOSMin\w*\Z"), "it asks for less than its QOS's minimum"),
    (re.compile(r"Nodes_required_for_job_are_DOWN"), "the nodes it needs are down, drained or "
     "reserved"),
)  # fmt: skip


def reason_key(reason: str) -> str:
    """The reason's name without squeue's details: ``"ReqNodeNotAvail, UnavailableNodes:c1"``
    -> ``"ReqNodeNotAvail"``."""
    return re.split(r"[\s,(]", reason.strip(), maxsplit=1)[0]


def blocked_because(reason: str) -> str | None:
    """Why SLURM will not start a job pending for ``reason``; None for queueing as usual."""
    key = reason_key(reason)
    if key in BLOCKED:
        return BLOCKED[key]
    for pattern, meaning in _BLOCKED_FAMILIES:
        if pattern.match(key):
            return meaning
    return None


@dataclass(frozen=True)
class Stuck:
    """A job that pended for a blocking reason longer than the limit."""

    job_id: str
    reason: str
    pending_s: float


class PendingClock:
    """Since when each job (array index) has pended for a blocking reason, across polls.

    A job's clock starts at the first poll that sees it pending for such a reason and stops
    when it runs, ends or pends for an ordinary reason. ``limit_s`` None: never stuck."""

    def __init__(self, limit_s: float | None) -> None:
        self.limit_s = limit_s
        self.since: dict[str, float] = {}
        self.newly: dict[str, str] = {}  # job -> reason: blocked since the last update

    def update(self, tasks: Iterable[JobState], now: float) -> list[Stuck]:
        """Take a poll's jobs (with their reasons) at time ``now``; return those over the
        limit, longest first."""
        blocked = {
            j.job_id: j.reason
            for j in tasks
            if j.state == "PENDING" and blocked_because(j.reason) is not None
        }
        self.newly = {job: reason for job, reason in blocked.items() if job not in self.since}
        self.since = {job: self.since.get(job, now) for job in blocked}
        if self.limit_s is None:
            return []
        stuck = [
            Stuck(job, blocked[job], now - since)
            for job, since in self.since.items()
            if now - since >= self.limit_s
        ]
        return sorted(stuck, key=lambda s: (-s.pending_s, s.job_id))


def blocked_notes(newly: dict[str, str], limit_s: float | None, limit: int = 5) -> list[str]:
    """One line per reason for jobs that just became blocked, e.g. ``"job 12 pends with
    reason BadConstraints: the job's constraints ... cannot be satisfied; SLURM will not
    start it as submitted: cancelled after max_pending_s 3600 unless it starts"``."""
    by_reason: dict[str, list[str]] = {}
    for job, reason in newly.items():
        by_reason.setdefault(reason, []).append(job)
    notes = []
    for reason, jobs in sorted(by_reason.items()):
        more = f" and {len(jobs) - limit} more" if len(jobs) > limit else ""
        noun = "job" if len(jobs) == 1 else "jobs"
        then = (
            f"cancelled after max_pending_s {limit_s:.0f} unless it starts"
            if limit_s is not None
            else "no pending limit is set: it waits until someone acts"
        )
        notes.append(
            f"{noun} {', '.join(jobs[:limit])}{more} pends with reason {reason}: "
            f"{blocked_because(reason)}; SLURM will not start it as submitted: {then}"
        )
    return notes


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def stuck_message(stuck: list[Stuck], limit_s: float, cancelled: list[str], limit: int = 5) -> str:
    """``"job 12 pending for 1h00m (over max_pending_s 3600) with reason BadConstraints: the
    job's constraints ... cannot be satisfied; SLURM will not start it as submitted.
    Cancelled job(s) [...]. ..."``"""
    by_reason: dict[str, list[Stuck]] = {}
    for s in stuck:
        by_reason.setdefault(s.reason, []).append(s)
    parts = []
    for reason, jobs in by_reason.items():
        ids = ", ".join(s.job_id for s in jobs[:limit])
        more = f" and {len(jobs) - limit} more" if len(jobs) > limit else ""
        noun = "job" if len(jobs) == 1 else "jobs"
        parts.append(
            f"{noun} {ids}{more} pending for {_duration(jobs[0].pending_s)} (over "
            f"max_pending_s {limit_s:.0f}) with reason {reason}: {blocked_because(reason)}"
        )
    return (
        "; ".join(parts)
        + f"; SLURM will not start it as submitted. Cancelled job(s) {cancelled}. Fix the "
        "request (resources.<step> in the site config) or the cluster, then clear the task."
    )
