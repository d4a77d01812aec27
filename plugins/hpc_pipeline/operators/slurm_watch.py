"""What the submit operator and the sensor share: the watch parameters (defined once), the
trigger they defer to, and how its event becomes the task's outcome."""

from __future__ import annotations

import logging
import posixpath
from typing import Any

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from hpc_pipeline.hooks.slurm import SlurmHook
from hpc_pipeline.slurm.jobs import JobState, log_path
from hpc_pipeline.slurm.signals import signal_notes
from hpc_pipeline.slurm.states import Verdict, explain, verdict
from hpc_pipeline.triggers.slurm import SlurmJobTrigger

_FULL_BYTES = 64 << 20  # below this much free space (1 % on small disks), staging is "full"


def full_disk_note(hook: SlurmHook, log_dir: str) -> str | None:
    """A sentence naming the filesystem of ``log_dir`` when it is (nearly) full: then the
    jobs could not write their results, and often not their logs either."""
    space = hook.free_space(log_dir)
    if space is None:
        return None
    free, total, mount = space
    if free >= min(_FULL_BYTES, total // 100):
        return None
    return (
        f"STAGING FULL: the filesystem holding {log_dir} (mounted at {mount}) has "
        f"{free // 1024} KiB free of {total // 1024} KiB; free space there, then clear "
        "the task (finished clips are kept)"
    )


def complete(
    log: logging.Logger, hook: SlurmHook, event: dict[str, Any], tail_lines: int
) -> dict[str, Any]:
    """Log the shown jobs' log tails; return the outcome (counts per state) or raise naming
    what failed: states, failed indices, what to change, log tails. A job SLURM would never
    start (status ``stuck``) fails the task without retries (``AirflowFailException``).

    Without a ``log_path`` (the sensor's jobs) squeue's StdOut is used when it reported one.
    """
    pattern = event.get("log_path")
    counts: dict[str, int] = event.get("counts", {})
    tails: list[str] = []
    for job in (JobState(**t) for t in event.get("shown", [])):
        if source := pattern or job.stdout:
            path = log_path(source, job)
            text = hook.tail(path, tail_lines).rstrip()
            log.info("---- %s: last %d lines of %s ----\n%s", job.job_id, tail_lines, path, text)
            tails.append(f"--- last lines of {path} ---\n{text}")
    result = {"job_ids": event["job_ids"], "log_path": pattern, "counts": counts}
    if event["status"] == "success":
        return result
    if event["status"] == "failed":
        indices = event.get("failed_indices", [])
        notes = explain([s for s in counts if verdict(s) is Verdict.FAILURE], "\n".join(tails))
        notes += signal_notes(t["exit_code"] for t in event.get("shown", []))
        if pattern and (full := full_disk_note(hook, posixpath.dirname(pattern))):
            notes.append(full)
        raise AirflowException(
            f"SLURM job failed: {event['message']}"
            + (f"; failed array indices: {indices}" if indices else "")
            + "\n"
            + "".join(f"{n}\n" for n in notes)
            + "\n".join(tails)
        )
    if event["status"] == "stuck":  # a retry would submit the same request: no retries
        raise AirflowFailException(f"SLURM job never started: {event['message']}")
    raise AirflowException(f"SLURM watch error: {event['message']}")


class SlurmWatchMixin:
    """The watch of SLURM jobs, for an operator or sensor (put it before the Airflow base).

    :param ssh_conn_id: the ``ssh`` connection to the login node (host key pinned).
    :param poll_interval: seconds between the trigger's first polls (grows x1.5 per poll,
        with jitter, up to ``max_poll_interval``).
    :param max_poll_interval: the longest wait between two polls, seconds.
    :param outage_timeout: seconds SLURM may stay unreadable (SSH or controller down, unknown
        states) before the task fails; shorter outages are ridden out.
    :param tail_lines: lines of each shown job's log copied into the task log.
    """

    log: Any  # the operator's or sensor's own logger (Airflow's LoggingMixin)

    def __init__(
        self,
        *,
        ssh_conn_id: str = SlurmHook.default_conn_name,
        poll_interval: float = 10,
        max_poll_interval: float = 120,
        outage_timeout: float = 900,
        tail_lines: int = 30,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.ssh_conn_id = ssh_conn_id
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.outage_timeout = outage_timeout
        self.tail_lines = tail_lines

    def watch_trigger(
        self, job_ids: list[str], log_path: str | None, **watch: Any
    ) -> SlurmJobTrigger:
        """The trigger for ``job_ids``; ``watch``: its array options (``SlurmJobTrigger``)."""
        return SlurmJobTrigger(
            ssh_conn_id=self.ssh_conn_id,
            job_ids=job_ids,
            poll_interval=self.poll_interval,
            max_poll_interval=self.max_poll_interval,
            outage_timeout=self.outage_timeout,
            log_path=log_path,
            **watch,
        )

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        with SlurmHook(self.ssh_conn_id) as hook:
            return complete(self.log, hook, event, self.tail_lines)
