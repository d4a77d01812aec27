"""Monitoring on the real stack (scheduler + triggerer + api-server, real SLURM, a real SMTP
server): two days run at once through the REST API, one partial (4 of 10 clips fail, above
the 10 % alert ratio), one whose master step fails (no source directory for that day).

Asserted: the audio trigger log shows progress (indices by state, the pending one with
SLURM's reason, clips done / total); the alert mails arrive with the day, the failed step and
the reason; ``report_day`` cleared and run again mails nothing more; each run's note holds
the day's summary and the status page link; the transcripts Asset event carries the day's
counts. (A clean day mails nothing: test_backfill_catchup, whose days are all complete.)
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

import sample_clips
from airflow_api import AirflowApi
from dag_support import ALERT_TO, SOURCE_ROOT
from support import AirflowStack, Inbox

DAG = "audio_pipeline_daily"
DAY = "2024-01-17"  # 6 speech clips and the 4 bad ones: partial
FAILING_DAY = "2024-01-16"  # no source directory: the master job fails


def _get(api: AirflowApi, path: str, timeout_s: float = 180) -> Any:
    """GET that rides out an api-server too busy to answer in time (2 shared cores)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return api._call("GET", path)
        except OSError:  # URLError, TimeoutError
            if time.monotonic() > deadline:
                raise
            time.sleep(5)


def _wait_run(api: AirflowApi, run_id: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while (state := _get(api, f"/api/v2/dags/{DAG}/dagRuns/{run_id}")["state"]) not in (
        "success",
        "failed",
    ):
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} still {state} after {timeout_s:.0f} s")
        time.sleep(5)
    return state


@pytest.fixture(scope="module")
def stack(airflow_stack: AirflowStack, alert_inbox: tuple[Inbox, int]) -> dict[str, Any]:
    """Both days run at once on the session's Airflow (alerts to ``alert_inbox``)."""
    sample_clips.make_day(SOURCE_ROOT, DAY, clips=6)
    subprocess.run(["chmod", "-R", "a+rX", str(SOURCE_ROOT)], check=True)
    api = AirflowApi(airflow_stack.base_url)
    api.wait_for_dag(DAG)
    api.unpause(DAG)
    runs = {
        "partial": api.trigger(DAG, {"date": DAY, "reprocess": "none"}),
        "failed": api.trigger(DAG, {"date": FAILING_DAY, "reprocess": "none"}),
    }
    states = {name: _wait_run(api, run_id, timeout_s=1200) for name, run_id in runs.items()}
    return {
        "home": airflow_stack.home,
        "api": api,
        "runs": runs,
        "states": states,
        "day": DAY,
        "inbox": alert_inbox[0],
    }


def _task_states(api: AirflowApi, run_id: str) -> dict[str, str]:
    tis = _get(api, f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances")["task_instances"]
    return {ti["task_id"]: ti["state"] for ti in tis}


def test_runs_end_as_expected(stack: dict[str, Any]) -> None:
    api, runs = stack["api"], stack["runs"]
    assert stack["states"]["partial"] == "success", _task_states(api, runs["partial"])
    assert stack["states"]["failed"] == "failed"
    states = _task_states(api, runs["failed"])
    assert states["master"] == "failed" and states["report_day"] == "success", states


def test_audio_trigger_log_shows_progress(stack: dict[str, Any]) -> None:
    logs = Path(
        stack["home"],
        "logs",
        f"dag_id={DAG}",
        f"run_id={stack['runs']['partial']}",
        "task_id=audio",
    )
    text = "\n".join(f.read_text() for f in logs.glob("attempt=*.log.trigger.*.log"))
    lines = [line for line in text.splitlines() if "Progress: " in line]
    assert lines, text[-3000:]
    # 10 clips in 2 shards of 8, one shard at a time (array_parallelism 1): the second waits,
    # and SLURM says why (accounting reports no reason for it: the controller's, via squeue).
    assert all(
        re.search(r"2 indices: pending \d+.*, running \d, done \d, failed \d", ln) for ln in lines
    ), lines
    assert any("pending 1 (1 JobArrayTaskLimit), running 1, done 0" in ln for ln in lines), lines
    clips = [
        tuple(map(int, m.groups()))
        for ln in lines
        if (m := re.search(r"clips (\d+)/(\d+) done", ln))
    ]
    assert clips and all(total == 10 for _, total in clips), lines
    assert (
        clips[-1][0] == 10 and "done 2, failed 0 | clips 10/10 done (100%), 4 failed" in lines[-1]
    )
    assert [done for done, _ in clips] == sorted(done for done, _ in clips)  # it moves forward


def test_alert_mails_name_day_step_and_reason(stack: dict[str, Any]) -> None:
    inbox = stack["inbox"]
    failed = inbox.find(f"{FAILING_DAY}: step master failed")
    assert len(failed) == 1, [m["Subject"] for m in inbox.messages]
    subject, body = failed[0]
    assert "SLURM job failed" in subject
    assert f"Day {FAILING_DAY}: step master of {DAG} failed" in body
    assert "does not exist" in body  # the job log's tail: the reason
    partial = inbox.find(f"{stack['day']}: day {stack['day']} is partial")
    assert len(partial) == 1, [m["Subject"] for m in inbox.messages]
    assert "4 clips failed (40.0% &gt; 10.0%" in partial[0][1]
    assert f"/audio-pipeline/?day={stack['day']}" in partial[0][1]
    assert all(m["X-Envelope-To"] == ALERT_TO for m in inbox.messages)


def test_run_note_holds_the_day_summary(stack: dict[str, Any]) -> None:
    api, runs, day = stack["api"], stack["runs"], stack["day"]
    note = _get(api, f"/api/v2/dags/{DAG}/dagRuns/{runs['partial']}")["note"]
    assert note.startswith(f"Day {day} partial: ok 6, failed 4 (")
    assert f"(/audio-pipeline/?day={day})" in note
    note = _get(api, f"/api/v2/dags/{DAG}/dagRuns/{runs['failed']}")["note"]
    assert note.startswith(f"Day {FAILING_DAY} not recorded; failed steps: master")


def test_transcripts_asset_event_carries_the_day(stack: dict[str, Any]) -> None:
    events = _get(stack["api"], f"/api/v2/assets/events?source_dag_id={DAG}")["asset_events"]
    # other tests' runs on the shared stack emit events too: only this module's runs count
    events = [e for e in events if e["source_run_id"] in stack["runs"].values()]
    assert [e["source_run_id"] for e in events] == [stack["runs"]["partial"]]  # not the failed day
    (event,) = events
    assert event["uri"] == "audio-pipeline://transcripts/"
    extra = event["extra"]
    assert (
        extra["day"],
        extra["status"],
        extra["clips_ok"],
        extra["clips_failed"],
        extra["clips_missing"],
    ) == (stack["day"], "partial", 6, 4, 0)
    assert sum(extra["failed_by_reason"].values()) == 4


def test_report_day_run_again_mails_nothing_more(stack: dict[str, Any]) -> None:
    """Cleared in the UI (here: the same REST call), ``report_day`` runs a second try that
    finds its alerts recorded in the results DB: the partial day's mail is not sent twice."""
    api, run_id, inbox, day = stack["api"], stack["runs"]["partial"], stack["inbox"], stack["day"]
    subject = f"{day}: day {day} is partial"
    assert len(inbox.find(subject)) == 1
    sent = len(inbox.messages)
    api._call(
        "POST",
        f"/api/v2/dags/{DAG}/clearTaskInstances",
        {"dry_run": False, "dag_run_id": run_id, "task_ids": ["report_day"], "only_failed": False},
    )
    deadline = time.monotonic() + 600
    while (ti := _get(api, f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances/report_day"))[
        "try_number"
    ] < 2 or ti["state"] not in ("success", "failed"):
        assert time.monotonic() < deadline, ti
        time.sleep(3)
    assert ti["state"] == "success"
    report = api.xcom(DAG, run_id, "report_day", "return_value")
    assert (report["mailed"], report["already_alerted"]) == (False, ["partial", "no_complete_day"])
    assert len(inbox.find(subject)) == 1 and len(inbox.messages) == sent
