"""SourceReadyTrigger: wait, without a worker slot, until a source day is ready to plan.

Each poll is one listing of ``<source_root>/<day>`` through the transfer backend: ``local``
= one ``find`` over SSH (``SlurmHook.list_tree``), ``globus`` = ``operation_ls`` from the
triggerer (``GlobusListingHook``). The hook is kept for the trigger's life and re-opened only
after a transport error. The rule (``hpc_pipeline.readiness``) decides; polls back off (x1.5,
capped, +-20 % jitter) while the listing is quiet and restart fast when it changes.

Transport errors (SSH down, Globus 5xx) are ridden out until the deadline, whose message
names the last error; an error polling again cannot fix (a listing refused, bad Globus
credentials) ends the wait at once. A triggerer restart re-creates the trigger from its
kwargs: the deadline is absolute, the stability clock restarts (the safe direction).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import globus_sdk
from airflow.triggers.base import BaseTrigger, TriggerEvent

from hpc_pipeline.config import Readiness
from hpc_pipeline.hooks.globus import GlobusListingHook
from hpc_pipeline.hooks.slurm import OUTAGE_ERRORS, REMOTE_ERRORS, SlurmHook
from hpc_pipeline.readiness import Listing, ReadinessWatch, SourceFile, deadline_message, describe
from hpc_pipeline.triggers.backoff import next_interval

# What a listing can fail with, through either backend.
LISTING_ERRORS: tuple[type[BaseException], ...] = (*REMOTE_ERRORS, globus_sdk.GlobusError)


def transient(exc: BaseException) -> bool:
    """Worth polling again: the transport failed, not the listing itself."""
    if isinstance(exc, (*OUTAGE_ERRORS, globus_sdk.NetworkError)):
        return True
    return isinstance(exc, globus_sdk.GlobusAPIError) and (
        exc.http_status >= 500 or exc.http_status == 429
    )


class SourceReadyTrigger(BaseTrigger):
    """Event payload: ``{"status": "ready" | "deadline" | "error", "message": str,
    "snapshot": {day, rule, where, exists, files, clips, clip_bytes, newest_mtime,
    last_change_seen, polls, waited_s}}``."""

    def __init__(
        self,
        *,
        day: str,
        where: str,
        backend: str,
        rule: dict[str, Any],
        started_at: float,
        deadline_at: float,
        ssh_conn_id: str = "",
        globus_conn_id: str = "",
        collection: str = "",
    ) -> None:
        super().__init__()
        self.day = day
        self.where = where
        self.backend = backend
        self.rule = rule
        self.started_at = started_at
        self.deadline_at = deadline_at
        self.ssh_conn_id = ssh_conn_id
        self.globus_conn_id = globus_conn_id
        self.collection = collection

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "hpc_pipeline.triggers.source_ready.SourceReadyTrigger",
            {
                "day": self.day,
                "where": self.where,
                "backend": self.backend,
                "rule": self.rule,
                "started_at": self.started_at,
                "deadline_at": self.deadline_at,
                "ssh_conn_id": self.ssh_conn_id,
                "globus_conn_id": self.globus_conn_id,
                "collection": self.collection,
            },
        )

    def _hook(self) -> SlurmHook | GlobusListingHook:
        if self.backend == "globus":
            return GlobusListingHook(self.globus_conn_id, self.collection)
        # One connection attempt per poll: the backoff between polls is ours.
        return SlurmHook(self.ssh_conn_id, conn_retry_attempts=1, cmd_timeout=120)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        rule = Readiness(**self.rule)
        watch = ReadinessWatch(rule)
        hook: SlurmHook | GlobusListingHook | None = None
        waiting_for, last_error, attempt = "", None, 0
        try:
            while True:
                try:
                    if hook is None:
                        hook = await asyncio.to_thread(self._hook)
                    entries = await asyncio.to_thread(hook.list_tree, self.where)
                except LISTING_ERRORS as exc:
                    if not transient(exc):  # the listing itself was refused: waiting won't help
                        yield self._event(
                            "error",
                            f"day {self.day}: cannot list {self.where}: "
                            f"{type(exc).__name__}: {exc}",
                            watch,
                        )
                        return
                    last_error = f"{type(exc).__name__}: {exc}"
                    self.log.warning("Listing %s failed (will retry): %s", self.where, last_error)
                    if hook is not None:
                        await asyncio.to_thread(hook.close)
                    hook = None
                else:
                    last_error = None
                    files = None if entries is None else tuple(SourceFile(*e) for e in entries)
                    decision = watch.observe(Listing(self.where, files, time.time()))
                    if decision.ready:
                        yield self._event("ready", "ready", watch)
                        return
                    waiting_for = decision.waiting_for
                    if decision.changed:
                        attempt = 0  # data is moving: look again soon
                        self.log.info(
                            "Day %s: %s; waiting for: %s",
                            self.day,
                            describe(watch.snapshot(self.day, self.started_at)),
                            waiting_for,
                        )
                now = time.time()
                if now >= self.deadline_at:
                    message = deadline_message(
                        watch.snapshot(self.day, self.started_at),
                        waiting_for,
                        self.deadline_at - self.started_at,
                        last_error,
                    )
                    yield self._event("deadline", message, watch)
                    return
                wait = next_interval(attempt, rule.poll_interval_s, rule.max_poll_interval_s)
                await asyncio.sleep(min(wait, self.deadline_at - now))
                attempt += 1
        finally:
            if hook is not None:
                await asyncio.to_thread(hook.close)

    def _event(self, status: str, message: str, watch: ReadinessWatch) -> TriggerEvent:
        return TriggerEvent(
            {
                "status": status,
                "message": message,
                "snapshot": watch.snapshot(self.day, self.started_at),
            }
        )
