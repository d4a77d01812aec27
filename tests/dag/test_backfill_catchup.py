"""Backfill and catchup on a real Airflow (scripts/airflow_stack.sh: api-server, scheduler,
dag-processor, triggerer), driven through the REST API the UI uses.

One stack serves both: the DAG starts yesterday with ``catchup`` on and ``max_active_runs``
1, so the scheduler creates the missed runs itself; meanwhile a backfill (POST
/api/v2/backfills, what *Backfill…* in the UI sends) covers two earlier days with
``reprocess: all`` for every run. Backfill runs are limited by the backfill's own
``max_active_runs`` (the DAG's limit counts only non-backfill runs), so the two lanes run side
by side, each one run at a time. Days hold one short clip: this is about scheduling.

Every day ends ``complete``, so these runs are also the clean days of the alerting: with
alerts mailed to a real SMTP server (aiosmtpd), not one mail arrives (the partial and failed
days that do mail are in test_monitoring_live).
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import sample_clips
from airflow_api import AirflowApi
from dag_support import ALERT_TO, SOURCE_ROOT, write_config
from support import REPO, TEST_NS, AirflowStack, Inbox, running, smtp_conn, smtp_server, stack_port

# Four runs on a shared 2-core bed: the stack fixture alone can outlast the suite's 900 s.
pytestmark = pytest.mark.timeout(2400)
DAG = "audio_pipeline_daily"
SOURCE = SOURCE_ROOT.with_name(f"{SOURCE_ROOT.name}-backfill")  # days of its own
TODAY = dt.datetime.now(dt.timezone.utc).date()
START = TODAY - dt.timedelta(days=1)  # catchup: runs dated START and TODAY
CATCHUP_DAYS = [(START + dt.timedelta(days=i - 1)).isoformat() for i in range(2)]
BACKFILL_RUN_DATES = [START - dt.timedelta(days=i) for i in (3, 2)]  # two: one after the other
BACKFILL_DAYS = [(d - dt.timedelta(days=1)).isoformat() for d in BACKFILL_RUN_DATES]


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[Inbox, int]]:
    with smtp_server() as server:
        yield server


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    devcluster: dict[str, str],
    postgres: str,
    smtp: tuple[Inbox, int],
) -> Iterator[dict[str, Any]]:
    """A fresh Airflow of its own (home, port, metadata DB, results DB, cluster dirs), its
    alerts mailed to ``smtp``."""
    for day in CATCHUP_DAYS + BACKFILL_DAYS:
        sample_clips.make_day(SOURCE, day, clips=1, bad=False, sentences_per_clip=1)
    subprocess.run(["chmod", "-R", "a+rX", str(SOURCE)], check=True)
    home = REPO / ".airflow" / f"test-backfill{TEST_NS}"
    shutil.rmtree(home, ignore_errors=True)
    tag = uuid.uuid4().hex[:8]
    # Scheduled and backfill run ids repeat across sessions (scheduled__<date>): a prefix of
    # its own keeps the operator from reattaching to an earlier session's jobs of that name.
    config = write_config(
        tmp_path_factory.mktemp("backfill") / "site.json",
        tag,
        job_prefix=f"bf{tag}",
        source_root=str(SOURCE),
        schedule="@daily",
        catchup=True,
        start_date=START.isoformat(),
        # Retries: Airflow 3.3 can fail a deferred task whose trigger fires within seconds when
        # the scheduler is slow (apache/airflow#72716, seen here); a retry reattaches to the job.
        max_active_runs=1,
        retries=3,
        alerts={
            "to": [ALERT_TO],
            "smtp_conn_id": "alerts_smtp",
            "from_email": "airflow@example.org",
            "max_failed_ratio": 0.0,
            "days_without_complete": 1,
        },
    )  # as strict as can be
    # Its own instance: the DAG's schedule and catchup are this test's subject.
    stack = AirflowStack(
        home=home,
        port=stack_port(1),
        metadata_db=f"airflow_backfill_test{TEST_NS}",
        results_db=f"results_backfill{TEST_NS}",
        config=config,
        env={"AIRFLOW_CONN_ALERTS_SMTP": smtp_conn(smtp[1])},
    )
    with running(stack):
        api = AirflowApi(stack.base_url)
        api.wait_for_dag(DAG)
        api.unpause(DAG)  # the scheduler now creates the missed (catchup) runs
        backfill = api.backfill(
            DAG,
            f"{BACKFILL_RUN_DATES[0]}T00:00:00Z",
            f"{BACKFILL_RUN_DATES[-1]}T00:00:00Z",
            {"reprocess": "all"},
        )
        runs = _wait_all_done(api, expected=4, timeout_s=2100)
        yield {
            "api": api,
            "runs": runs,
            "backfill": backfill,
            "results_dsn": stack.results_dsn,
            "inbox": smtp[0],
        }


def _wait_all_done(api: AirflowApi, expected: int, timeout_s: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            runs = api.dag_runs(DAG)
        except OSError:  # the api-server can be slow to answer on a loaded 2-core machine
            runs = []
        if len(runs) >= expected and all(r["state"] in ("success", "failed") for r in runs):
            return runs
        if time.monotonic() > deadline:
            raise AssertionError(
                f"runs not done in {timeout_s} s: {[(r['dag_run_id'], r['state']) for r in runs]}"
            )
        time.sleep(5)


def _day_of(run: dict[str, Any]) -> str:
    return (
        dt.datetime.fromisoformat(run["logical_date"]).date() - dt.timedelta(days=1)
    ).isoformat()


def _assert_one_at_a_time(runs: list[dict[str, Any]]) -> None:
    """Started oldest logical date first, each after the previous one ended."""
    when = dt.datetime.fromisoformat
    by_start = sorted(runs, key=lambda r: when(r["start_date"]))
    assert [r["logical_date"] for r in by_start] == sorted(r["logical_date"] for r in runs)
    for before, after in zip(by_start, by_start[1:]):
        assert when(before["end_date"]) <= when(after["start_date"]), (before, after)


def _recorded(dsn: str) -> dict[str, tuple]:
    """Per day: status, clips ok, audio jobs submitted, transcripts."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT d.day::text, d.status, d.clips_ok,"
            " (SELECT count(DISTINCT j.job_id) FROM slurm_jobs j"
            "   WHERE j.day = d.day AND j.step = 'audio'),"
            " (SELECT count(*) FROM transcripts t WHERE t.clip_id LIKE d.day::text || '/%')"
            " FROM audio_days d"
        ).fetchall()
    return {day: tuple(rest) for day, *rest in rows}


def test_backfill_processes_each_day_once_one_run_at_a_time(stack: dict[str, Any]) -> None:
    api: AirflowApi = stack["api"]
    runs = [r for r in stack["runs"] if r["run_type"] == "backfill"]
    assert sorted(_day_of(r) for r in runs) == BACKFILL_DAYS
    assert all(r["state"] == "success" for r in runs), [(r["dag_run_id"], r["state"]) for r in runs]
    _assert_one_at_a_time(runs)  # the backfill's max_active_runs=1: the cluster is not flooded
    for run in runs:  # reprocess=all, set once for the whole backfill, reached every run
        assert run["conf"]["reprocess"] == "all"
        day = api.xcom(DAG, run["dag_run_id"], "resolve_day", "return_value")
        assert (day["day"], day["reprocess"]) == (_day_of(run), "all")
    recorded = _recorded(stack["results_dsn"])
    for day in BACKFILL_DAYS:
        assert recorded[day] == ("complete", 1, 1, 1), (day, recorded.get(day))
    # The scheduler closes a backfill on a later loop than its last run's end.
    deadline = time.monotonic() + 120
    while (backfill := api._call("GET", f"/api/v2/backfills/{stack['backfill']['id']}"))[
        "completed_at"
    ] is None and time.monotonic() < deadline:
        time.sleep(3)
    assert backfill["completed_at"] is not None and backfill["max_active_runs"] == 1


def test_catchup_runs_the_missed_days_oldest_first(stack: dict[str, Any]) -> None:
    runs = [r for r in stack["runs"] if r["run_type"] == "scheduled"]
    assert sorted(_day_of(r) for r in runs) == CATCHUP_DAYS
    assert all(r["state"] == "success" for r in runs), [(r["dag_run_id"], r["state"]) for r in runs]
    _assert_one_at_a_time(runs)
    recorded = _recorded(stack["results_dsn"])
    for day in CATCHUP_DAYS:
        assert recorded[day] == ("complete", 1, 1, 1), (day, recorded.get(day))


def test_complete_days_mail_no_alert(stack: dict[str, Any]) -> None:
    """The alerting ran on every day (``report_day`` judged it: no problem) and, with a real
    SMTP server configured and the strictest rules, sent nothing."""
    api: AirflowApi = stack["api"]
    assert len(stack["runs"]) == 4 and all(r["state"] == "success" for r in stack["runs"])
    for run in stack["runs"]:
        report = api.xcom(DAG, run["dag_run_id"], "report_day", "return_value")
        assert (report["problems"], report["mailed"]) == ([], False), (run["dag_run_id"], report)
        assert report["note"].startswith(f"Day {_day_of(run)} complete: ok 1, failed 0"), report
    assert stack["inbox"].messages == []
    with psycopg.connect(stack["results_dsn"]) as conn:
        assert conn.execute("SELECT count(*) FROM alerts_sent").fetchone() == (0,)
