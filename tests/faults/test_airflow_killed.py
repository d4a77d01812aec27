"""Fault: the scheduler and the triggerer are SIGKILLed while ``audio`` is deferred (its shard
running on SLURM), then restarted. The run completes on the same SLURM job: the restarted
triggerer resumes the watch from the trigger stored in the metadata DB, nothing is
resubmitted. A real Airflow of the test's own (home, port, metadata DB, results DB)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_api import AirflowApi
from faults_support import DAY, assert_recorded_once, job_ids, site_config
from support import REPO, TEST_NS, AirflowStack, running, stack_port, wait_until

DAG = "audio_pipeline_daily"


@pytest.fixture
def stack(
    tmp_path: Path, tag: str, postgres: str, source_day: list[str], devcluster: dict[str, str]
) -> Iterator[AirflowStack]:
    """An Airflow of this test's own: it kills and restarts its components."""
    stack = AirflowStack(
        home=REPO / ".airflow" / f"faults-stack{TEST_NS}",
        port=stack_port(2),
        metadata_db=f"airflow_faults_stack{TEST_NS}",
        results_db=f"results_faults_{tag}",
        config=site_config(tmp_path / "site.json", tag),
    )
    with running(stack, keep_metadata=True):
        yield stack


def _kill_group(pidfile: Path) -> None:
    """SIGKILL a component and its children (airflow_stack.sh starts each with setsid)."""
    os.killpg(int(pidfile.read_text()), signal.SIGKILL)


def test_scheduler_and_triggerer_killed_while_audio_is_deferred(
    stack: AirflowStack, source_day: list[str], tag: str
) -> None:
    api = AirflowApi(stack.base_url)
    api.wait_for_dag(DAG)
    api.unpause(DAG)
    run_id = api.trigger(DAG, {"date": DAY, "reprocess": "none"})
    watched = wait_until(
        lambda: (
            api.task_states(DAG, run_id).get("audio") == "deferred"
            and api.xcom(DAG, run_id, "audio", "slurm_job")["job_ids"]
        ),
        timeout_s=900,
    )
    run_dir = stack.home / "run"
    for component in ("scheduler", "triggerer"):
        _kill_group(run_dir / f"{component}.pid")
    time.sleep(5)  # the shard works on while nothing watches it
    stack.start()  # restarts the two dead components

    state = wait_until(
        lambda: (s := api.run_state(DAG, run_id)) in ("success", "failed") and s, timeout_s=900
    )
    assert state == "success", api.task_states(DAG, run_id)
    assert api.xcom(DAG, run_id, "audio", "slurm_job")["job_ids"] == watched
    names = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-o", "JobName", "--starttime=now-1days"],
        capture_output=True,
        text=True,
    ).stdout.split()
    audio_names = {n for n in names if n.startswith(f"f{tag}-audio-")}
    (name,) = audio_names
    assert job_ids(name) == watched  # the same job, never resubmitted
    assert_recorded_once(stack.results_dsn, source_day)
