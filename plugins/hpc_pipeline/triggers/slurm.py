"""SlurmJobTrigger: wait, without a worker slot, until SLURM jobs (and array indices) end.

Why paramiko in ``asyncio.to_thread`` instead of ``SSHHookAsync``: the command building,
quoting and ``sacct``/``squeue`` parsing must live in exactly one place (``hpc_pipeline.slurm``);
an asyncssh twin would duplicate it. Each poll is one short blocking call (one ``sacct``,
rarely one ``squeue``), run off the event loop in a thread, on one connection that this
trigger keeps for its whole life and re-opens only after a transport error.

Outage handling: a poll that cannot give a verdict for every job (SSH down, controller
unreachable, a job id neither ``sacct`` nor ``squeue`` knows, a state unknown to
``hpc_pipeline.slurm.states``) is *degraded*. The trigger keeps polling with backoff and fails
only when polls have been degraded continuously for ``outage_timeout``.

Progress: on every change the trigger logs the jobs' counts by state and, given
``results_dir`` and ``clips_total`` (the audio step), the clips done / total from the shards'
result lines (``hpc_pipeline.slurm.progress``), with SLURM's reason for each pending index: at
most one more remote call per poll (``SlurmHook.progress_probe``: ``squeue`` for the pending
indices accounting gave no reason, plus the result-line count), none while nothing pends
without a reason, runs or ends.

Accounting down (slurmdbd stopped or unreachable: ``sacct`` fails): the hook answers from the
controller (``squeue``) alone; the trigger says so once when it starts and once when
accounting answers again, and keeps judging the jobs (finished ones stay visible to squeue
for ``MinJobAge``; after that the poll is degraded and waits for accounting).

Stuck jobs: with ``max_pending`` (the operator's jobs, not the sensor's), a job that pends
that long for a reason SLURM gives when it will not start the job as submitted
(``hpc_pipeline.slurm.pending``) has the step's jobs cancelled and the task failed naming the
reason. A node lost under a job (``NODE_FAIL``, requeued or not) is logged naming the node.

Cancellation: Airflow 3.3 calls ``BaseTrigger.on_kill()`` (only) when a user marks the
deferred task failed/success or clears it; we ``scancel`` the jobs there. ``cleanup()``
runs on every exit, including triggerer restarts, so it only closes the connection.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from audio_hpc.contract import FAILED_LINE_MARK
from hpc_pipeline.hooks.slurm import OUTAGE_ERRORS, REMOTE_ERRORS, SlurmHook
from hpc_pipeline.slurm.errors import SlurmError
from hpc_pipeline.slurm.jobs import JobState, with_offsets
from hpc_pipeline.slurm.pending import PendingClock, blocked_notes, stuck_message
from hpc_pipeline.slurm.progress import (
    ShardLines,
    array_counts,
    format_progress,
    pending_without_reason,
    with_reasons,
)
from hpc_pipeline.slurm.states import Verdict
from hpc_pipeline.slurm.verdict import (
    event_payload,
    failure_message,
    judge,
    node_loss_notes,
    on_nodes,
    requeued,
    with_lost_attempts,
)
from hpc_pipeline.triggers.backoff import next_interval


class SlurmJobTrigger(BaseTrigger):
    """Poll ``job_ids`` until all are terminal; the event's payload is
    ``hpc_pipeline.slurm.verdict.event_payload``.

    :param ssh_conn_id: the ``ssh`` connection to the login node.
    :param job_ids: the SLURM jobs to watch (array jobs: every index).
    :param poll_interval: seconds between the first polls; it grows x1.5 per poll with +-20%
        jitter up to ``max_poll_interval``.
    :param max_poll_interval: the longest wait between two polls, seconds.
    :param outage_timeout: seconds polls may stay degraded (SSH down, controller unreachable,
        unknown jobs or states) before the watch ends with an error.
    :param log_path: the jobs' ``--output`` pattern, carried into the event.
    :param array_size: the jobs are one array of that many indices (first run and retries
        under one name); no verdict until every index is reported.
    :param index_offsets: job id -> offset of its indices in the array (a split array).
    :param job_indices: job id -> the indices it runs (see ``judge``).
    :param results_dir: where the shards write result lines, for the progress lines.
    :param clips_total: how many clips the shards were given (None: job counts only).
    :param max_pending: seconds a job may pend for a reason that means SLURM will not start
        it as submitted (``hpc_pipeline.slurm.pending``) before the jobs are cancelled and the
        watch ends with status ``stuck``; None: no limit (jobs submitted elsewhere).
    """

    def __init__(
        self,
        *,
        ssh_conn_id: str,
        job_ids: list[str],
        poll_interval: float = 10.0,
        max_poll_interval: float = 120.0,
        outage_timeout: float = 900.0,
        log_path: str | None = None,
        array_size: int | None = None,
        index_offsets: dict[str, int] | None = None,
        job_indices: dict[str, str] | None = None,
        results_dir: str | None = None,
        clips_total: int | None = None,
        max_pending: float | None = None,
    ) -> None:
        super().__init__()
        self.ssh_conn_id = ssh_conn_id
        self.job_ids = [str(j) for j in job_ids]
        self.array_size = array_size
        self.index_offsets = dict(index_offsets or {})
        self.job_indices = dict(job_indices or {})
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.outage_timeout = outage_timeout
        self.log_path = log_path  # carried into the event: the resumed task needs no kwargs
        self.results_dir = results_dir
        self.clips_total = clips_total
        self._shards = ShardLines(clips_total) if results_dir and clips_total is not None else None
        self._last_progress: str | None = None
        self.max_pending = max_pending
        self._pending = PendingClock(max_pending)
        self._accounting_down_since: float | None = None
        self._node_notes: set[str] = set()  # node losses already logged
        self._on_nodes: dict[str, str | None] = {}  # jobs running at the last poll -> node

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "hpc_pipeline.triggers.slurm.SlurmJobTrigger",
            {
                "ssh_conn_id": self.ssh_conn_id,
                "job_ids": self.job_ids,
                "poll_interval": self.poll_interval,
                "max_poll_interval": self.max_poll_interval,
                "outage_timeout": self.outage_timeout,
                "log_path": self.log_path,
                "array_size": self.array_size,
                "index_offsets": self.index_offsets,
                "job_indices": self.job_indices,
                "results_dir": self.results_dir,
                "clips_total": self.clips_total,
                "max_pending": self.max_pending,
            },
        )

    def _hook(self) -> SlurmHook:
        # One connection attempt per poll: the backoff between polls is ours.
        return SlurmHook(self.ssh_conn_id, conn_retry_attempts=1, cmd_timeout=60)

    def _event(self, status: str, message: str, tasks: list[JobState]) -> TriggerEvent:
        return TriggerEvent(event_payload(self.job_ids, status, message, tasks, self.log_path))

    def _final(self, overall: Verdict, tasks: list[JobState]) -> TriggerEvent | None:
        """The event that ends the watch on this verdict; None while the jobs still run."""
        if overall is Verdict.SUCCESS:
            return self._event("success", f"SLURM jobs {self.job_ids} completed", tasks)
        if overall is Verdict.FAILURE:
            return self._event("failed", failure_message(tasks), tasks)
        return None

    def settled(self, hook: SlurmHook) -> dict[str, Any] | None:
        """The outcome now (one query), when every job already ended and was understood.

        Why: a retry that only reattaches to finished jobs completes without deferring;
        deferring on a job that is already over races Airflow's own deferral bookkeeping on
        a loaded scheduler (apache/airflow#72716: the task is marked failed)."""
        try:
            jobs = with_offsets(hook.query(self.job_ids, self.array_size), self.index_offsets)
        except REMOTE_ERRORS:
            return None  # the trigger's polls ride this out (or report it)
        overall, tasks, problem = judge(self.job_ids, jobs, self.array_size, self.job_indices)
        event = None if problem else self._final(overall, tasks)
        return event.payload if event else None

    def _log_accounting(self, hook: SlurmHook, now: float) -> None:
        """Say once when accounting (sacct) stops answering, and once when it is back."""
        error = getattr(hook, "accounting_error", None)
        if error and self._accounting_down_since is None:
            self._accounting_down_since = now
            self.log.warning(
                "Accounting (sacct) cannot answer: %s. Judging the jobs from the controller's "
                "view (squeue) until it is back; nothing is resubmitted.",
                error,
            )
        elif not error and self._accounting_down_since is not None:
            self.log.info(
                "Accounting (sacct) answers again after %.0fs without it",
                now - self._accounting_down_since,
            )
            self._accounting_down_since = None

    async def _log_node_losses(self, hook: SlurmHook, tasks: list[JobState]) -> list[JobState]:
        """Log each node lost under a job once; return ``tasks`` with the lost attempts of
        jobs that ran at the last poll and wait again now (one ``sacct -D`` call, only then)."""
        again = requeued(self._on_nodes, tasks)
        self._on_nodes = on_nodes(tasks)
        if again and (read_attempts := getattr(hook, "attempts", None)) is not None:
            try:
                tasks = with_lost_attempts(tasks, await asyncio.to_thread(read_attempts, again))
            except REMOTE_ERRORS as exc:
                self.log.warning("Cannot read the attempts of %s: %s", again, exc)
        for note in node_loss_notes(tasks):
            if note not in self._node_notes:
                self._node_notes.add(note)
                self.log.warning("%s", note)
        return tasks

    async def _stuck(self, hook: SlurmHook, tasks: list[JobState]) -> TriggerEvent | None:
        """The end of the watch when a job pended too long for a blocking reason: the
        step's jobs cancelled (nothing left behind), the reason named."""
        stuck = self._pending.update(tasks, time.monotonic())
        for note in blocked_notes(self._pending.newly, self.max_pending):
            self.log.warning("%s", note)
        if not stuck or self.max_pending is None:
            return None
        try:
            await asyncio.to_thread(hook.cancel, self.job_ids)
            cancelled = list(self.job_ids)
        except REMOTE_ERRORS as exc:
            self.log.warning("Cannot cancel %s: %s: %s", self.job_ids, type(exc).__name__, exc)
            cancelled = []
        message = stuck_message(stuck, self.max_pending, cancelled)
        self.log.error("%s", message)
        return self._event("stuck", message, tasks)

    async def _log_progress(self, hook: SlurmHook, tasks: list[JobState]) -> list[JobState]:
        """Log the progress line when it changed; return ``tasks`` with the pending reasons
        the controller gave.

        At most one remote call (``SlurmHook.progress_probe``) on top of the poll's query:
        SLURM's reason for pending indices that the query left without one, and the result
        lines of shards that can have grown. A failed probe keeps what is known."""
        wanted = pending_without_reason(tasks)
        names = self._shards.to_read(tasks) if self._shards is not None else []
        if wanted or names != []:
            try:
                probe = await asyncio.to_thread(
                    hook.progress_probe,
                    wanted,
                    self.results_dir if names != [] else None,
                    names,
                    FAILED_LINE_MARK,
                )
                if probe.squeue_rc:
                    self.log.info("squeue gave no pending reasons (rc=%s)", probe.squeue_rc)
                tasks = with_reasons(tasks, probe.reasons)
                if self._shards is not None and probe.counts is not None:
                    self._shards.record(tasks, names, probe.counts)
            except REMOTE_ERRORS as exc:
                self.log.warning("Cannot read progress: %s: %s", type(exc).__name__, exc)
        clips = self._shards.clips() if self._shards is not None else None
        line = format_progress(array_counts(tasks, self.array_size), clips)
        if line != self._last_progress:
            self.log.info("Progress: %s", line)
            self._last_progress = line
        return tasks

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook: SlurmHook | None = None
        degraded_since: float | None = None
        attempt = 0
        try:
            while True:
                tasks: list[JobState] = []
                try:
                    if hook is None:
                        hook = await asyncio.to_thread(self._hook)
                    jobs = with_offsets(
                        await asyncio.to_thread(hook.query, self.job_ids, self.array_size),
                        self.index_offsets,
                    )
                    self._log_accounting(hook, time.monotonic())
                    overall, tasks, problem = judge(
                        self.job_ids, jobs, self.array_size, self.job_indices
                    )
                    if tasks:
                        tasks = await self._log_progress(hook, tasks)
                        tasks = await self._log_node_losses(hook, tasks)
                        if (stuck := await self._stuck(hook, tasks)) is not None:
                            yield stuck
                            return
                except OUTAGE_ERRORS as exc:
                    overall, problem = Verdict.UNKNOWN, f"{type(exc).__name__}: {exc}"
                    if hook is not None:
                        await asyncio.to_thread(hook.close)
                    hook = None
                except SlurmError as exc:  # SLURM refused the query: polling again won't help
                    yield self._event("error", str(exc), tasks)
                    return
                if problem is None:
                    degraded_since = None
                    if (event := self._final(overall, tasks)) is not None:
                        yield event
                        return
                else:
                    now = time.monotonic()
                    degraded_since = degraded_since or now
                    self.log.warning(
                        "SLURM poll degraded for %.0fs: %s", now - degraded_since, problem
                    )
                    if now - degraded_since >= self.outage_timeout:
                        yield self._event(
                            "error",
                            f"no verdict on SLURM jobs {self.job_ids} for "
                            f"{self.outage_timeout:.0f}s: {problem}",
                            tasks,
                        )
                        return
                await asyncio.sleep(
                    next_interval(attempt, self.poll_interval, self.max_poll_interval)
                )
                attempt += 1
        finally:
            if hook is not None:
                await asyncio.to_thread(hook.close)

    async def on_kill(self) -> None:
        """The user killed the deferred task: cancel its SLURM jobs."""

        def cancel() -> None:
            with self._hook() as hook:
                hook.cancel(self.job_ids)

        self.log.info("Cancelling SLURM jobs %s", self.job_ids)
        await asyncio.to_thread(cancel)
