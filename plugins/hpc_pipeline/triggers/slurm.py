"""SlurmJobTrigger: wait, without a worker slot, until SLURM jobs (and array indices) end.

Why paramiko in ``asyncio.to_thread`` instead of ``SSHHookAsync``: the command building,
quoting and ``sacct``/``squeue`` parsing must live in exactly one place (``SlurmHook``);
an asyncssh twin would duplicate it. Each poll is one short blocking call (one ``sacct``,
rarely one ``squeue``), run off the event loop in a thread, on one connection that this
trigger keeps for its whole life and re-opens only after a transport error.

Outage handling: a poll that cannot give a verdict for every job (SSH down, controller
unreachable, a job id neither ``sacct`` nor ``squeue`` knows, a state unknown to
``slurm_states``) is *degraded*. The trigger keeps polling with backoff and fails only when
polls have been degraded continuously for ``outage_timeout_s``.

Progress: on every change the trigger logs the jobs' counts by state and, given
``results_dir`` and ``clips_total`` (the audio step), the clips done / total from the shards'
result lines (``hpc_pipeline.progress``), with SLURM's reason for each pending index: at
most one more remote call per poll (``SlurmHook.progress_probe``: ``squeue`` for the pending
indices accounting gave no reason, plus the result-line count), none while nothing pends
without a reason, runs or ends.

Cancellation: Airflow 3.3 calls ``BaseTrigger.on_kill()`` (only) when a user marks the
deferred task failed/success or clears it; we ``scancel`` the jobs there. ``cleanup()``
runs on every exit, including triggerer restarts, so it only closes the connection.
"""
from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from hpc_pipeline.hooks.slurm import (TRANSIENT_ERRORS, JobState, SlurmError, SlurmHook,
                                      SlurmUnavailable, expand_job_id, latest_runs,
                                      with_offsets)
from audio_hpc.contract import FAILED_LINE_MARK
from hpc_pipeline.progress import (ShardLines, array_counts, format_progress,
                                   pending_without_reason, with_reasons)
from hpc_pipeline.slurm_states import Verdict, verdict

SHOWN_JOBS = 5  # jobs whose log tails a finished task shows; arrays can have thousands


def judge(job_ids: list[str], jobs: list[JobState], array_size: int | None = None,
          job_indices: dict[str, str] | None = None
          ) -> tuple[Verdict, list[JobState], str | None]:
    """Overall verdict over the newest job of every (name, index), those jobs, and why the
    poll is degraded (None when every job was understood).

    ``array_size``: indices ``0..array_size-1`` must all be reported before any verdict. Why:
    under load, accounting and the controller can each miss an index for a poll (slurmdbd
    records arrive late), and judging the indices that are there would pass a day whose
    failed shard was not listed yet.

    ``job_indices``: job id -> the indices (an ``--array`` spec, whole-array numbering) that
    job runs; each must be reported *by that job*. Why: after a retry, the first job's failed
    row of an index would otherwise stand in for the retry's row that accounting has not
    listed yet, and fail the retry (seen with 400 indices on the test bed)."""
    missing = sorted(set(job_ids) - {j.array_job_id for j in jobs})
    latest = latest_runs(jobs)
    unknown = [f"{j.job_id}={j.state}" for j in latest if verdict(j.state) is Verdict.UNKNOWN]
    reported = {j.array_index for j in latest}
    unlisted = [i for i in range(array_size or 0) if i not in reported]
    rows = {(j.array_job_id, j.array_index) for j in jobs}
    unlisted += sorted(i for job, spec in (job_indices or {}).items()
                       for _, i in expand_job_id(f"{job}_[{spec}]") if (job, i) not in rows)
    if missing or unknown or unlisted:
        why = (f"jobs unknown to SLURM: {missing}" if missing else
               f"unknown states: {unknown}" if unknown else
               f"array indices not reported yet: {unlisted[:20]}")
        return Verdict.UNKNOWN, latest, why
    verdicts = {verdict(j.state) for j in latest}
    if Verdict.WAIT in verdicts:
        return Verdict.WAIT, latest, None
    return (Verdict.FAILURE if Verdict.FAILURE in verdicts else Verdict.SUCCESS), latest, None


def failure_message(tasks: list[JobState], limit: int = 20) -> str:
    """``"12_1 FAILED exit=3:0 node=vm; ..."`` for the failed indices (the first ``limit``)."""
    failed = [f"{j.job_id} {j.state} exit={j.exit_code} node={j.node or '-'}"
              for j in tasks if verdict(j.state) is Verdict.FAILURE]
    more = f"; ... and {len(failed) - limit} more" if len(failed) > limit else ""
    return "; ".join(failed[:limit]) + more


def event_payload(job_ids: list[str], status: str, message: str, tasks: list[JobState],
                  log_path: str | None = None) -> dict[str, Any]:
    """The outcome in a size that does not grow with the array, except by its failed
    indices: Airflow stores the event in its metadata DB (a row per index was 113 KB at 400
    indices). A retry needs nothing from it: it asks SLURM what failed (``array_plan``)."""
    failed = [j for j in tasks if verdict(j.state) is Verdict.FAILURE]
    return {"status": status, "job_ids": job_ids, "message": message, "log_path": log_path,
            "counts": dict(sorted(Counter(j.state for j in tasks).items())),
            "failed_indices": sorted(j.array_index for j in failed if j.array_index is not None),
            "shown": [j.to_dict() for j in (failed if status == "failed" else tasks)[:SHOWN_JOBS]]}


class SlurmJobTrigger(BaseTrigger):
    """Poll ``job_ids`` until all are terminal; event payload::

        {"status": "success" | "failed" | "error", "job_ids": [...], "message": str,
         "log_path": the --output pattern given to the trigger (or None),
         "counts": {state: indices (or jobs) in it, newest job per index},
         "failed_indices": [every failed array index, whole-array numbering],
         "shown": [JobState dict of the first SHOWN_JOBS failed indices (all jobs when
                   none failed): the task shows their log tails]}
    """

    def __init__(self, *, ssh_conn_id: str, job_ids: list[str], poll_interval_s: float = 10.0,
                 max_poll_interval_s: float = 120.0, outage_timeout_s: float = 900.0,
                 log_path: str | None = None, array_size: int | None = None,
                 index_offsets: dict[str, int] | None = None,
                 job_indices: dict[str, str] | None = None,
                 results_dir: str | None = None, clips_total: int | None = None) -> None:
        """``array_size``: the jobs are one array of that many indices (first run and
        retries under one name); no verdict until every index is reported.
        ``index_offsets``: job id -> offset of its indices in the array (a split array).
        ``job_indices``: job id -> the indices it runs (see ``judge``).
        ``results_dir``/``clips_total``: where the shards write result lines and how many
        clips they were given, for the progress lines (None: job counts only)."""
        super().__init__()
        self.ssh_conn_id = ssh_conn_id
        self.job_ids = [str(j) for j in job_ids]
        self.array_size = array_size
        self.index_offsets = dict(index_offsets or {})
        self.job_indices = dict(job_indices or {})
        self.poll_interval_s = poll_interval_s
        self.max_poll_interval_s = max_poll_interval_s
        self.outage_timeout_s = outage_timeout_s
        self.log_path = log_path  # carried into the event: the resumed task needs no kwargs
        self.results_dir = results_dir
        self.clips_total = clips_total
        self._shards = ShardLines(clips_total) if results_dir and clips_total is not None else None
        self._last_progress: str | None = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("hpc_pipeline.triggers.slurm.SlurmJobTrigger", {
            "ssh_conn_id": self.ssh_conn_id, "job_ids": self.job_ids,
            "poll_interval_s": self.poll_interval_s,
            "max_poll_interval_s": self.max_poll_interval_s,
            "outage_timeout_s": self.outage_timeout_s, "log_path": self.log_path,
            "array_size": self.array_size, "index_offsets": self.index_offsets,
            "job_indices": self.job_indices, "results_dir": self.results_dir,
            "clips_total": self.clips_total})

    def _next_interval(self, attempt: int) -> float:
        """Exponential backoff (x1.5 per poll, capped) with +-20% jitter, so many triggers
        watching one cluster neither poll in lockstep nor hammer slurmctld."""
        base = min(self.max_poll_interval_s, self.poll_interval_s * 1.5 ** min(attempt, 30))
        return base * random.uniform(0.8, 1.2)

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
        except (*TRANSIENT_ERRORS, SlurmUnavailable, SlurmError):
            return None  # the trigger's polls ride this out (or report it)
        overall, tasks, problem = judge(self.job_ids, jobs, self.array_size, self.job_indices)
        event = None if problem else self._final(overall, tasks)
        return event.payload if event else None

    async def _log_progress(self, hook: SlurmHook, tasks: list[JobState]) -> None:
        """Log the progress line when it changed.

        At most one remote call (``SlurmHook.progress_probe``) on top of the poll's query:
        SLURM's reason for pending indices that the query left without one, and the result
        lines of shards that can have grown. A failed probe keeps what is known."""
        wanted = pending_without_reason(tasks)
        names = self._shards.to_read(tasks) if self._shards is not None else []
        if wanted or names != []:
            try:
                probe = await asyncio.to_thread(
                    hook.progress_probe, wanted,
                    self.results_dir if names != [] else None, names, FAILED_LINE_MARK)
                if probe.squeue_rc:
                    self.log.info("squeue gave no pending reasons (rc=%s)", probe.squeue_rc)
                tasks = with_reasons(tasks, probe.reasons)
                if self._shards is not None and probe.counts is not None:
                    self._shards.record(tasks, names, probe.counts)
            except (*TRANSIENT_ERRORS, SlurmError) as exc:
                self.log.warning("Cannot read progress: %s: %s", type(exc).__name__, exc)
        clips = self._shards.clips() if self._shards is not None else None
        line = format_progress(array_counts(tasks, self.array_size), clips)
        if line != self._last_progress:
            self.log.info("Progress: %s", line)
            self._last_progress = line

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook: SlurmHook | None = None
        degraded_since: float | None = None
        attempt = 0
        try:
            while True:
                tasks: list[JobState] = []
                try:
                    hook = hook or await asyncio.to_thread(self._hook)
                    jobs = with_offsets(await asyncio.to_thread(
                        hook.query, self.job_ids, self.array_size), self.index_offsets)
                    overall, tasks, problem = judge(self.job_ids, jobs, self.array_size,
                                                    self.job_indices)
                    if tasks:
                        await self._log_progress(hook, tasks)
                except (*TRANSIENT_ERRORS, SlurmUnavailable) as exc:
                    overall, problem = Verdict.UNKNOWN, f"{type(exc).__name__}: {exc}"
                    if hook is not None:
                        await asyncio.to_thread(hook.close)
                    hook = None
                except SlurmError as exc:  # SLURM refused the query itself: polling again won't help
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
                    self.log.warning("SLURM poll degraded for %.0fs: %s", now - degraded_since, problem)
                    if now - degraded_since >= self.outage_timeout_s:
                        yield self._event("error", f"no verdict on SLURM jobs {self.job_ids} for "
                                          f"{self.outage_timeout_s:.0f}s: {problem}", tasks)
                        return
                await asyncio.sleep(self._next_interval(attempt))
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
