"""Fault: two runs of the same day at once (the scheduled run, and a manual trigger while it
works). The second run is refused at ``write_request`` with a message naming the run that
holds the day, before it touches staging: no second manifest, no second SLURM job, nothing
recorded by it; the first run completes the day with every clip recorded once.

The lock is a per-day claim in the results DB (``day_claims``), checked against Airflow's own
record of the holder's state, so a claim of a run that ended (even red) is taken over.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from faults_support import (
    DAY,
    Background,
    assert_recorded_once,
    live_jobs,
    load_dag,
    query,
    run_day,
    shard_pids,
    staging_day,
)
from support import REPO

SECOND_RUN = """
import json, sys
from faults_support import load_dag, run_day, LOGICAL_DATE
import datetime as dt
run = run_day(load_dag(sys.argv[1]), logical_date=LOGICAL_DATE + dt.timedelta(hours=2))
print("RESULT " + json.dumps({"state": run.state, "tasks": run.tasks, "run_id": run.run_id}))
"""


def test_second_run_of_a_day_is_refused(
    fault_config: Callable[..., Path], results_db: str, source_day: list[str], tag: str
) -> None:
    config = fault_config()
    # what the second interpreter imports by name (the paths this session's tests see)
    paths = [
        str(Path(__file__).parent),
        str(REPO / "tests"),
        str(REPO / "plugins"),
    ]

    def second_run(shards: list[int]) -> subprocess.CompletedProcess:
        """The manual trigger, with the first run's shard frozen meanwhile: a two-clip day
        could otherwise end before the second run (a fresh interpreter importing Airflow)
        reaches ``write_request`` on a loaded machine, and then taking over the claim of
        an ended run is right."""
        for pid in shards:
            os.kill(pid, signal.SIGSTOP)
        try:
            return subprocess.run(
                [sys.executable, "-c", SECOND_RUN, str(config)],
                capture_output=True,
                text=True,
                timeout=600,
                env={**os.environ, "PYTHONPATH": os.pathsep.join(paths)},
            )
        finally:
            for pid in shards:
                os.kill(pid, signal.SIGCONT)

    # The manual trigger arrives while the first run's shard works.
    staging = str(staging_day(tag).parent)
    manual = Background(
        lambda: live_jobs(f"f{tag}-audio-") and shard_pids(staging), second_run, poll_s=0.05
    )
    first = run_day(load_dag(config))
    proc = manual.result(timeout_s=600)
    out = proc.stdout + proc.stderr
    (result,) = [
        json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")
    ]

    assert first.state == "success", first.tasks
    assert result["state"] == "failed", result["tasks"]
    assert result["tasks"]["write_request"] == "failed", result["tasks"]
    assert {result["tasks"][t] for t in ("master", "transfer", "audio")} == {"upstream_failed"}
    assert result["tasks"]["record_results"] == "skipped", result["tasks"]
    assert f"day {DAY} is being processed by run '{first.run_id}', which is still running" in out, (
        out[-3000:]
    )

    assert_recorded_once(results_db, source_day)
    assert query(results_db, "SELECT dag_run_id FROM audio_days") == [(first.run_id,)]
    manifest = json.loads((staging_day(tag) / "manifest.json").read_text())
    plan = manifest["plan_id"]
    assert sorted(c["name"] for s in manifest["shards"] for c in s["clips"]) == source_day
    names = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-o", "JobName", "--starttime=now-1days"],
        capture_output=True,
        text=True,
    ).stdout.split()
    ours = [n for n in names if n.startswith(f"f{tag}-")]
    assert sorted({n.split("-")[1] for n in ours}) == ["audio", "master", "transfer"]
    assert all(n.endswith(plan) for n in ours), ours  # no job of the refused run
    assert len(ours) == 3  # and none twice
