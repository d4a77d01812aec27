"""SourceReadySensor: hold planning until the source day is ready (late data).

Deferrable only: the wait can last hours and must hold no worker slot, and the ``stable``
rule's clock lives in the trigger across polls (a poke/reschedule sensor would lose it
between pokes). The task succeeds with the snapshot it logged (XCom: clips, bytes, files,
polls, waited) or fails without retries, naming what was missing, once the deadline passes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from airflow.providers.common.compat.sdk import AirflowFailException
from airflow.sdk import BaseOperator

from hpc_pipeline.config import Readiness
from hpc_pipeline.readiness import day_path, ready_message
from hpc_pipeline.triggers.source_ready import SourceReadyTrigger


class SourceReadySensor(BaseOperator):
    """Wait until ``<source_root>/<day>`` satisfies ``readiness`` on ``backend``.

    ``backend``: ``local`` (listing over SSH on the cluster, ``ssh_conn_id``) or ``globus``
    (``operation_ls`` on ``collection`` with ``globus_conn_id``, from the triggerer).
    """

    template_fields: Sequence[str] = ("day", "source_root")
    ui_color = "#e8f4f8"

    def __init__(
        self,
        *,
        day: str,
        source_root: str,
        readiness: Readiness,
        backend: str = "local",
        ssh_conn_id: str = "",
        globus_conn_id: str = "",
        collection: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if backend not in ("local", "globus"):
            raise ValueError(f"backend must be local or globus, got {backend!r}")
        self.day = day
        self.source_root = source_root
        self.readiness = readiness
        self.backend = backend
        self.ssh_conn_id = ssh_conn_id
        self.globus_conn_id = globus_conn_id
        self.collection = collection

    def execute(self, context: Any) -> dict[str, Any] | None:
        if self.readiness.rule == "none":
            self.log.info("Readiness rule 'none': planning day %s without waiting", self.day)
            return None
        now = time.time()
        where = day_path(self.source_root, self.day)
        self.log.info(
            "Waiting for day %s at %s:%s (rule %s, deadline in %.0fs)",
            self.day,
            self.backend,
            where,
            self.readiness.rule,
            self.readiness.deadline_s,
        )
        self.defer(
            trigger=SourceReadyTrigger(
                day=self.day,
                where=where,
                backend=self.backend,
                rule=asdict(self.readiness),
                started_at=now,
                deadline_at=now + self.readiness.deadline_s,
                ssh_conn_id=self.ssh_conn_id,
                globus_conn_id=self.globus_conn_id,
                collection=self.collection,
            ),
            method_name="execute_complete",
        )

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        if event["status"] != "ready":
            # Retrying would only wait again for the same thing: clear the task for that.
            raise AirflowFailException(event["message"])
        self.log.info(ready_message(event["snapshot"]))
        return event["snapshot"]
