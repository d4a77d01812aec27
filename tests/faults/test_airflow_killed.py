"""Fault: the scheduler and the triggerer are SIGKILLed while ``audio`` is deferred (its shard
running on SLURM), then restarted. The run completes on the same SLURM job: the restarted
triggerer resumes the watch from the trigger stored in the metadata DB, nothing is
resubmitted. A real Airflow of the test's own (home, port, metadata DB, results DB)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from faults_support import DAY, REPO, assert_recorded_once, job_ids, write_config
from tests.testbed import wait_until

from airflow_api import AirflowApi

PORT = int(os.environ.get("AUDIO_TEST_STACK_PORT", "8081"))
DAG = "audio_pipeline_daily"


def _psql(sql: str) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-qc", sql], check=True)


@pytest.fixture
def stack(tmp_path: Path, tag: str, postgres: str, source_day: list[str],
          devcluster: dict[str, str]) -> Iterator[dict[str, Any]]:
    results_db = f"results_faults_{tag}"
    _psql(f"CREATE DATABASE {results_db} OWNER audio")
    home = REPO / ".airflow" / f"faults-stack{os.environ.get('AUDIO_TEST_NS', '')}"
    config = write_config(tmp_path / "site.json", tag)
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW_PORT": str(PORT),
           "AIRFLOW_DB": f"airflow_faults_stack{os.environ.get('AUDIO_TEST_NS', '')}",
           "RESULTS_DB": results_db, "AUDIO_PIPELINE_CONFIG": str(config)}
    for key in [k for k in env if k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))]:
        del env[key]
    script = ["bash", str(REPO / "scripts" / "airflow_stack.sh")]
    subprocess.run([*script, "start"], env=env, check=True)
    try:
        yield {"home": home, "dsn": f"{postgres}/{results_db}",
               "start": lambda: subprocess.run([*script, "start"], env=env, check=True)}
    finally:
        subprocess.run([*script, "stop"], env=env, check=False)
        _psql(f"DROP DATABASE IF EXISTS {results_db} WITH (FORCE)")



def _kill_group(pidfile: Path) -> None:
    """SIGKILL a component and its children (airflow_stack.sh starts each with setsid)."""
    os.killpg(int(pidfile.read_text()), signal.SIGKILL)


def test_scheduler_and_triggerer_killed_while_audio_is_deferred(
        stack: dict[str, Any], source_day: list[str], tag: str) -> None:
    api = AirflowApi(f"http://127.0.0.1:{PORT}")
    api.wait_for_dag(DAG)
    api.unpause(DAG)
    run_id = api.trigger(DAG, {"date": DAY, "reprocess": "none"})
    watched = wait_until(lambda: api.task_states(DAG, run_id).get("audio") == "deferred"
                    and api.xcom(DAG, run_id, "audio", "slurm_job")["job_ids"], timeout_s=900)
    run_dir = stack["home"] / "run"
    for component in ("scheduler", "triggerer"):
        _kill_group(run_dir / f"{component}.pid")
    time.sleep(5)   # the shard works on while nothing watches it
    stack["start"]()   # restarts the two dead components

    state = wait_until(lambda: (s := api.run_state(DAG, run_id)) in ("success", "failed") and s,
                  timeout_s=900)
    assert state == "success", api.task_states(DAG, run_id)
    assert api.xcom(DAG, run_id, "audio", "slurm_job")["job_ids"] == watched
    names = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "JobName", "--starttime=now-1days"],
                           capture_output=True, text=True).stdout.split()
    audio_names = {n for n in names if n.startswith(f"f{tag}-audio-")}
    (name,) = audio_names
    assert job_ids(name) == watched               # the same job, never resubmitted
    assert_recorded_once(stack["dsn"], source_day)
