"""SlurmJobSensor: wait for SLURM jobs submitted elsewhere (same trigger as the operator)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from hpc_pipeline.hooks.slurm import SlurmHook
from hpc_pipeline.operators.slurm_watch import SlurmWatchMixin, complete
from hpc_pipeline.slurm.states import Verdict
from hpc_pipeline.slurm.verdict import event_payload, failure_message, judge


def parse_job_ids(value: str | int | Sequence[str | int]) -> list[str]:
    """Accept ``12``, ``"12,13"``, ``["12"]`` or a rendered list ``"['12', '13']"``."""
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    ids = re.findall(r"\d+(?:_\d+)?", str(value))
    if not ids:
        raise ValueError(f"no SLURM job id in {value!r}")
    return ids


class SlurmJobSensor(SlurmWatchMixin, BaseSensorOperator):
    """Succeed when every job (every array index) in ``job_id`` is COMPLETED; fail, naming
    state, exit code, node and log tail, when all ended and any failed.

    :param job_id: the job(s): ``12``, ``"12,13"``, a list, or a rendered list (templated).
    :param log_path: the job's ``--output`` pattern (``%A``/``%a``/``%j``), to tail its log
        into the task log and failure message; without it a tail appears only when the final
        state came from squeue (accounting down), which reports the output path.
    :param deferrable: defer to the trigger (default); ``False`` pokes (one sacct a poke).
    :param poke_interval: seconds between pokes, and the trigger's first poll interval.

    The other watch parameters (``ssh_conn_id``, ``max_poll_interval``, ``outage_timeout``,
    ``tail_lines``) are ``SlurmWatchMixin``'s; ``timeout`` and ``mode`` are the sensor's.
    """

    template_fields: Sequence[str] = ("job_id", "log_path")

    def __init__(
        self,
        *,
        job_id: str | int | Sequence[str | int],
        log_path: str | None = None,
        deferrable: bool = True,
        poke_interval: float = 10,
        **kwargs: Any,
    ) -> None:
        super().__init__(poll_interval=poke_interval, poke_interval=poke_interval, **kwargs)
        self.job_id = job_id
        self.log_path = log_path
        self.deferrable = deferrable

    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            return super().execute(context)
        self.log.info("Waiting for SLURM job(s) %s", parse_job_ids(self.job_id))
        self.defer(
            trigger=self.watch_trigger(parse_job_ids(self.job_id), self.log_path),
            method_name="execute_complete",
        )

    def poke(self, context: Any) -> bool | PokeReturnValue:
        job_ids = parse_job_ids(self.job_id)
        with SlurmHook(self.ssh_conn_id) as hook:
            overall, tasks, problem = judge(job_ids, hook.query(job_ids))
            if problem or overall is Verdict.WAIT:
                return False
            failed = overall is Verdict.FAILURE
            event = event_payload(
                job_ids,
                "failed" if failed else "success",
                failure_message(tasks) if failed else "completed",
                tasks,
                self.log_path,
            )
            return PokeReturnValue(
                is_done=True, xcom_value=complete(self.log, hook, event, self.tail_lines)
            )
