"""Live progress of a SLURM step, for the trigger log of its deferred task.

One line per change, e.g. ``8 indices: pending 3 (2 JobArrayTaskLimit, 1 Priority), running 1,
done 3, failed 1 | clips 230/400 done (57%), 4 failed``: the array's indices by state (pending
with SLURM's reason) and, for the audio step, the day's clips done / total counted from the
shards' result lines (one line per finished clip, see ``audio_hpc.contract``).

Accounting (``sacct``) often keeps no reason for the pending part of an array: the trigger
asks the controller for those (``pending_without_reason``, then ``with_reasons``) in the same
remote call that counts result lines (``SlurmHook.progress_probe``).

``ShardLines`` keeps the per-shard counts between polls so that a poll re-reads only the
files that can still grow: those of running shards, and of shards that just ended.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace

from audio_hpc.contract import shard_results_name
from hpc_pipeline.slurm.jobs import JobState
from hpc_pipeline.slurm.states import Verdict, verdict

# Waiting states in which the job's processes exist (a shard may be writing results).
RUNNING_STATES = frozenset({"RUNNING", "COMPLETING", "CONFIGURING", "STAGE_OUT", "SIGNALING"})


@dataclass(frozen=True)
class ArrayCounts:
    """Indices (or single jobs) of a step by state; ``pending`` by SLURM's reason."""

    total: int
    array: bool = True
    pending: dict[str, int] = field(default_factory=dict)
    running: int = 0
    done: int = 0
    failed: int = 0


@dataclass(frozen=True)
class ClipCounts:
    done: int  # result lines written (ok or failed)
    failed: int
    total: int  # clips the plan gave the shards


def pending_without_reason(tasks: list[JobState]) -> list[str]:
    """SLURM job ids (an array's own id) holding pending indices that came without a reason."""
    return sorted({j.array_job_id for j in tasks if j.state == "PENDING" and not j.reason})


def with_reasons(tasks: list[JobState], reasons: dict[str, str]) -> list[JobState]:
    """``tasks`` with the pending reasons the controller gave (by SLURM job id ``"12_3"``)."""
    return [
        replace(j, reason=reasons[j.job_id])
        if j.state == "PENDING" and not j.reason and j.job_id in reasons
        else j
        for j in tasks
    ]


def array_counts(tasks: list[JobState], size: int | None = None) -> ArrayCounts:
    """Count ``tasks`` (the newest job per index) by state; ``size`` indices expected in all
    (indices SLURM has not listed yet count as pending, reason ``unlisted``)."""
    pending: Counter[str] = Counter()
    running = done = failed = 0
    for job in tasks:
        judged = verdict(job.state)
        if judged is Verdict.SUCCESS:
            done += 1
        elif judged is Verdict.FAILURE:
            failed += 1
        elif job.state in RUNNING_STATES:
            running += 1
        elif job.reason:
            pending[job.reason] += 1
        else:  # neither accounting nor the controller gave one (e.g. just submitted)
            pending["no reason reported" if job.state == "PENDING" else job.state] += 1
    total = max(size or 0, len(tasks))
    if total > len(tasks):
        pending["unlisted"] += total - len(tasks)
    array = size is not None or any(j.array_index is not None for j in tasks)
    return ArrayCounts(
        total=total, array=array, pending=dict(pending), running=running, done=done, failed=failed
    )


def format_progress(counts: ArrayCounts, clips: ClipCounts | None = None) -> str:
    reasons = ", ".join(
        f"{n} {r}" for r, n in sorted(counts.pending.items(), key=lambda kv: (-kv[1], kv[0]))
    )
    pending = sum(counts.pending.values())
    nouns = ("index", "indices") if counts.array else ("job", "jobs")
    line = (
        f"{counts.total} {nouns[counts.total != 1]}: pending {pending}"
        + (f" ({reasons})" if reasons else "")
        + f", running {counts.running}, done {counts.done}, failed {counts.failed}"
    )
    if clips is not None:
        share = f" ({100 * clips.done // clips.total}%)" if clips.total else ""
        line += f" | clips {clips.done}/{clips.total} done{share}, {clips.failed} failed"
    return line


class ShardLines:
    """Result-line counts per shard of one plan, kept across polls.

    The first read covers every shard (a retry's earlier attempts count too); after that only
    shards that run, or ended since their last read, are read again. A shard read after its
    index ended is final. An index is a shard number (``--shard $SLURM_ARRAY_TASK_ID``)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.lines: dict[int, tuple[int, int]] = {}
        self.final: set[int] = set()
        self.read_once = False

    def to_read(self, tasks: list[JobState]) -> list[str] | None:
        """File names to count now; ``None`` = every shard's; ``[]`` = nothing can have changed."""
        if not self.read_once:
            return None
        return [
            shard_results_name(j.array_index)
            for j in tasks
            if j.array_index is not None
            and j.array_index not in self.final
            and (
                j.state in RUNNING_STATES or verdict(j.state) in (Verdict.SUCCESS, Verdict.FAILURE)
            )
        ]

    def record(
        self, tasks: list[JobState], names: list[str] | None, counts: dict[str, tuple[int, int]]
    ) -> None:
        """Take the counts of a read of ``names`` (files absent from ``counts`` are empty)."""
        by_name = {shard_results_name(j.array_index): j for j in tasks if j.array_index is not None}
        if names is None:
            names = sorted(set(counts) | set(by_name))
            self.read_once = True
        for name in names:
            shard = int(name.removeprefix("shard-").removesuffix(".jsonl"))
            self.lines[shard] = counts.get(name, (0, 0))
            job = by_name.get(name)
            if job is not None and verdict(job.state) in (Verdict.SUCCESS, Verdict.FAILURE):
                self.final.add(shard)

    def clips(self) -> ClipCounts:
        done = sum(n for n, _ in self.lines.values())
        failed = sum(f for _, f in self.lines.values())
        # A torn last line (shard killed mid-write) can count once until it is rewritten.
        return ClipCounts(
            done=min(done, self.total), failed=min(failed, self.total), total=self.total
        )
