"""The DAG under a real Airflow: api-server, scheduler, dag-processor and triggerer with the
LocalExecutor, started by the same script as the README demo.

A run triggered through the REST API must defer its SLURM waits to the triggerer and land
rows in PostgreSQL; marking a waiting SLURM task failed (as from the UI) must cancel its job;
a person triggering the DAG with a date from the UI (headless Chromium)
must see the run succeed.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg
import pytest

from airflow_api import AirflowApi
from support import REPO, AirflowStack, wait_until

ARTIFACTS = REPO / ".artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def stack(airflow_stack: AirflowStack, source_day: tuple[str, dict[str, str]]) -> dict[str, str]:
    """The session's Airflow; this module's day is ``source_day`` (no other test runs it)."""
    return {
        "home": str(airflow_stack.home),
        "results_dsn": airflow_stack.results_dsn,
        "day": source_day[0],
        "base": airflow_stack.base_url,
    }


def test_rest_trigger_runs_through_scheduler_and_triggerer(stack: dict[str, str]) -> None:
    api = AirflowApi(stack["base"])
    api.wait_for_dag("audio_pipeline_daily")
    api.unpause("audio_pipeline_daily")
    run_id = api.trigger("audio_pipeline_daily", {"date": stack["day"], "reprocess": "none"})
    state = api.wait("audio_pipeline_daily", run_id, timeout_s=900)
    tasks = api.task_states("audio_pipeline_daily", run_id)
    assert state == "success", tasks
    with psycopg.connect(stack["results_dsn"]) as conn:
        (ok,) = conn.execute(
            "SELECT count(*) FROM transcripts WHERE clip_id LIKE %s", (f"{stack['day']}/%",)
        ).fetchall()[0]
        jobs = conn.execute(
            "SELECT step, state FROM slurm_jobs WHERE day = %s ORDER BY step", (stack["day"],)
        ).fetchall()
    assert ok == 6
    assert {step for step, _ in jobs} == {"master", "transfer", "audio"}
    # The waits really deferred: each SLURM step has a trigger log written by the triggerer.
    run_logs = Path(stack["home"], "logs", "dag_id=audio_pipeline_daily", f"run_id={run_id}")
    for step in ("master", "transfer", "audio"):
        trigger_logs = list((run_logs / f"task_id={step}").glob("attempt=*.log.trigger.*.log"))
        assert trigger_logs, f"{step} never deferred"
        assert "Trigger fired event" in trigger_logs[0].read_text()


def test_marking_a_waiting_task_failed_cancels_its_slurm_job(stack: dict[str, str]) -> None:
    """The triggerer calls the trigger's on_kill on a user action; the job must not run on."""
    dag = "audio_pipeline_daily"
    api = AirflowApi(stack["base"])
    api.unpause(dag)
    run_id = api.trigger(dag, {"date": stack["day"], "reprocess": "all"})
    job_ids = wait_until(
        lambda: (
            api.task_states(dag, run_id).get("audio") == "deferred"
            and api.xcom(dag, run_id, "audio", "slurm_job")["job_ids"]
        ),
        timeout_s=600,
    )
    # Step in once the triggerer runs the wait (a trigger never started has no on_kill to call).
    audio_logs = Path(stack["home"], "logs", f"dag_id={dag}", f"run_id={run_id}", "task_id=audio")
    wait_until(
        lambda: any(
            " starting" in f.read_text() for f in audio_logs.glob("attempt=*.log.trigger.*.log")
        ),
        timeout_s=120,
    )
    assert _sacct_states(job_ids) <= {"PENDING", "RUNNING"}  # still working when we step in
    api.set_task_state(dag, run_id, "audio", "failed")
    wait_until(lambda: _sacct_states(job_ids) == {"CANCELLED"}, timeout_s=90)
    assert any(
        f"Cancelling SLURM jobs {job_ids}" in f.read_text()
        for f in audio_logs.glob("attempt=*.log.trigger.*.log")
    )
    assert api.wait(dag, run_id, timeout_s=300) == "failed"
    assert api.task_states(dag, run_id)["audio"] == "failed"


def _sacct_states(job_ids: list[str]) -> set[str]:
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-o", "State", "-j", ",".join(job_ids)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {line.split()[0] for line in out.splitlines() if line}


def test_browser_trigger_with_a_date_succeeds(stack: dict[str, str]) -> None:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    base = stack["base"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(base + "/", wait_until="networkidle")
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill("admin")
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(lambda url: "/auth/login" not in url, timeout=30_000)
        page.goto(base + "/dags/audio_pipeline_daily", wait_until="networkidle")
        page.get_by_role("button", name="Trigger").first.click()
        page.locator("input[name=element_date]").fill(stack["day"])  # the `date` param's field
        page.get_by_test_id("trigger-dag-submit").click()
        page.wait_for_timeout(2000)
        api = AirflowApi(base)
        api.unpause("audio_pipeline_daily")
        runs = api._call(
            "GET", "/api/v2/dags/audio_pipeline_daily/dagRuns?order_by=-run_after&limit=1"
        )
        run = runs["dag_runs"][0]
        assert run["conf"]["date"] == stack["day"]
        state = api.wait("audio_pipeline_daily", run["dag_run_id"], timeout_s=600)
        page.goto(
            f"{base}/dags/audio_pipeline_daily/runs/{run['dag_run_id']}", wait_until="networkidle"
        )
        page.wait_for_timeout(2000)
        page.screenshot(path=str(ARTIFACTS / "browser_trigger_run.png"), full_page=True)
        browser.close()
    assert state == "success", api.task_states("audio_pipeline_daily", run["dag_run_id"])
