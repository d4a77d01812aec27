"""Day alerts are mailed once per (day, alert kind, DAG run): the end-of-day report run twice
against a real SMTP server (aiosmtpd) and a real results DB sends one mail; a mail that could
not be sent is not recorded (the retry sends it); a new run of the day alerts again.

``report_day`` is called as the DAG's last task calls it; Airflow's task context is reduced
to the task instance's ids (no run note here: the API connection is left undefined). The
same repeat through a real scheduler (``report_day`` cleared) is in test_monitoring_live.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
from airflow.sdk.exceptions import AirflowException

from audio_hpc.contract import Clip, ClipResult, Manifest, Shard
from hpc_pipeline.alerts import StepFailureNotifier
from hpc_pipeline.config import PipelineConfig, load_config
from hpc_pipeline.hooks.results_db import DayLoad, ResultsDbHook
from hpc_pipeline.run_report import report_day
from support import Inbox, free_port, smtp_conn, smtp_server

DAY = "2024-02-20"
ALERT_TO = "owners@example.org"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    with smtp_server() as server:
        os.environ["AIRFLOW_CONN_ALERTS_SMTP"] = smtp_conn(server[1])
        os.environ["AIRFLOW_CONN_DEAD_SMTP"] = smtp_conn(free_port())  # nothing listens
        yield server
    del os.environ["AIRFLOW_CONN_ALERTS_SMTP"], os.environ["AIRFLOW_CONN_DEAD_SMTP"]


@pytest.fixture
def config(tmp_path: Path) -> PipelineConfig:
    path = tmp_path / "site.json"
    path.write_text(
        json.dumps(
            {
                "api_conn_id": "no_api_here",
                "alerts": {
                    "to": [ALERT_TO],
                    "smtp_conn_id": "alerts_smtp",
                    "from_email": "airflow@example.org",
                    "max_failed_ratio": 0.1,
                    "days_without_complete": 3,
                },
            }
        )
    )
    return load_config(str(path))


def _partial_day(hook: ResultsDbHook) -> dict[str, Any]:
    """One ok and one corrupt clip, recorded through the hook's own load path."""
    clips = [Clip(f"{DAY}/{n}", n, f"/src/{n}", 10) for n in ("a.m4a", "b.m4a")]
    results = [
        ClipResult(
            clip_id=clips[0].clip_id,
            date=DAY,
            status="ok",
            text="hi",
            duration_s=3.0,
            finished_at=f"{DAY}T23:00:00+00:00",
        ),
        ClipResult(
            clip_id=clips[1].clip_id,
            date=DAY,
            status="failed",
            error_kind="corrupt",
            error="moov atom not found",
            finished_at=f"{DAY}T23:00:00+00:00",
        ),
    ]
    manifest = Manifest(date=DAY, plan_id="p", source="/src", shards=[Shard(0, clips)], listed=2)
    return hook.record_day(
        DayLoad(day=DAY, plan_id="p", dag_run_id="r", manifest=manifest, results=results)
    )


def _context(run_id: str) -> dict[str, Any]:
    return {
        "ti": SimpleNamespace(dag_id="audio_pipeline_daily", run_id=run_id, task_id="report_day")
    }


def test_a_day_alert_is_mailed_once_per_run(
    results_db: str, airflow_db: None, smtp: tuple[Inbox, int], config: PipelineConfig
) -> None:
    inbox = smtp[0]
    hook = ResultsDbHook("audio_results_db")
    hook.migrate()
    summary = _partial_day(hook)
    assert summary["status"] == "partial"

    first = report_day(config, _context("manual__1"), DAY, summary, [])
    assert first["mailed"] and first["already_alerted"] == []
    again = report_day(config, _context("manual__1"), DAY, summary, [])  # report_day retried
    assert (again["mailed"], again["already_alerted"]) == (False, ["partial", "no_complete_day"])
    assert again["problems"] == first["problems"]
    (mail,) = inbox.find(f"{DAY}: day {DAY} is partial")
    assert "1 clips failed (50.0% &gt; 10.0%; corrupt 1)" in mail[1] and "manual__1" in mail[1]
    assert len(inbox.messages) == 1

    # A new run of the day whose mail cannot go out: nothing recorded, its retry mails.
    dead = dataclasses.replace(
        config, alerts=dataclasses.replace(config.alerts, smtp_conn_id="dead_smtp")
    )
    with pytest.raises((OSError, AirflowException)):
        report_day(dead, _context("manual__2"), DAY, summary, [])
    assert len(inbox.messages) == 1
    assert report_day(config, _context("manual__2"), DAY, summary, [])["mailed"]
    assert not report_day(config, _context("manual__2"), DAY, summary, [])["mailed"]
    mails = inbox.find(f"{DAY}: day {DAY} is partial")
    assert len(inbox.messages) == len(mails) == 2 and "manual__2" in mails[1][1]
    assert all(m["X-Envelope-To"] == ALERT_TO for m in inbox.messages)
    with psycopg.connect(results_db) as conn:
        rows = conn.execute(
            "SELECT day::text, kind, dag_run_id FROM alerts_sent ORDER BY dag_run_id, kind"
        ).fetchall()
    assert rows == [
        (DAY, kind, run)
        for run in ("manual__1", "manual__2")
        for kind in ("no_complete_day", "partial")
    ]


def _failed_try(try_number: int, day: str = DAY) -> dict[str, Any]:
    """A task context as Airflow hands ``on_failure_callback`` one (the ids and what it reads)."""
    ti = SimpleNamespace(
        dag_id="audio_pipeline_daily",
        run_id="manual__1",
        task_id="master",
        try_number=try_number,
        log_url="http://airflow/log",
        xcom_pull=lambda task_ids: {"day": day},
    )
    return {"ti": ti, "exception": "SLURM job failed: 7 FAILED exit=2:0 node=vm", "params": {}}


def test_a_step_failure_is_mailed_once_per_try(
    results_db: str, airflow_db: None, smtp: tuple[Inbox, int], config: PipelineConfig
) -> None:
    """Airflow can call a task's failure callback twice for one try (the task process, then
    the scheduler on the executor's late report): one mail; the next try's failure mails."""
    inbox = smtp[0]
    ResultsDbHook("audio_results_db").migrate()
    notifier = StepFailureNotifier(config.alerts, "audio_results_db")
    notifier.notify(_failed_try(2))
    notifier.notify(_failed_try(2))
    assert len(inbox.find(f"{DAY}: step master failed: SLURM job failed: 7")) == 1
    notifier.notify(_failed_try(3))  # cleared and failed again: news
    assert len(inbox.find(f"{DAY}: step master failed")) == 2
    # No date to key on (resolve_day never ran on a bad date): mailed without the check.
    notifier.notify(_failed_try(1, day="2024-02-30"))
    notifier.notify(_failed_try(1, day="2024-02-30"))
    assert len(inbox.find("2024-02-30: step master failed")) == 2
    with psycopg.connect(results_db) as conn:
        kinds = [k for (k,) in conn.execute("SELECT kind FROM alerts_sent ORDER BY kind")]
    assert kinds == ["step master failed, try 2", "step master failed, try 3"]
