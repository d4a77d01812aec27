"""Late data on the real test bed (sshd, SLURM, PostgreSQL): ``source_ready`` defers until
the source day is ready, so clips that arrive during the wait are planned; a deadline ends
in a red task naming what was missing, with nothing submitted to SLURM.

Runs the DAG up to ``read_plan`` with ``dag.test()`` (the trigger runs inline, in the
deferred state): the plan is what late data changes; transcribing adds nothing here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from dag_support import SOURCE_ROOT, write_config
from hpc_pipeline.hooks.slurm import SlurmHook
from support import import_dag

LATE_ROOT = SOURCE_ROOT.with_name(SOURCE_ROOT.name + "-late")
STABLE_S = 8
ARRIVALS_AFTER_S = 6.0  # the run reaches source_ready ~5-8 s after it starts


@pytest.fixture
def late_source() -> Iterator[Path]:
    shutil.rmtree(LATE_ROOT, ignore_errors=True)
    LATE_ROOT.mkdir(parents=True)
    LATE_ROOT.chmod(0o755)
    yield LATE_ROOT
    shutil.rmtree(LATE_ROOT, ignore_errors=True)


def add_clips(day_dir: Path, *names: str) -> None:
    """Clips as the uploader drops them (the plan only lists names; content is not decoded)."""
    day_dir.mkdir(exist_ok=True)
    day_dir.chmod(0o755)
    for name in names:
        (day_dir / name).write_bytes(b"\0" * 64)
        (day_dir / name).chmod(0o644)


def load_dag(tmp_path: Path, tag: str, readiness: dict[str, Any], **overrides: Any) -> ModuleType:
    """The DAG file parsed with a site config of its own (readiness, job prefix)."""
    config = write_config(
        tmp_path / "site.json",
        tag,
        source_root=str(LATE_ROOT),
        job_prefix=f"late{tag}",
        readiness=readiness,
        **overrides,
    )
    before = os.environ.get("AUDIO_PIPELINE_CONFIG")
    os.environ["AUDIO_PIPELINE_CONFIG"] = str(config)
    try:
        module = import_dag(f"late_dag_{tag}")
    finally:
        if before is None:
            del os.environ["AUDIO_PIPELINE_CONFIG"]
        else:
            os.environ["AUDIO_PIPELINE_CONFIG"] = before
    return module


def run_until_plan(module: ModuleType, day: str) -> tuple[str, dict[str, Any]]:
    """``dag.test()`` of the tasks up to ``read_plan``; (run state, {task id: TI})."""
    subset = module.dag.partial_subset(task_ids=["read_plan"], include_upstream=True)
    dag_run = subset.test(run_conf={"date": day})
    return dag_run.state, {ti.task_id: ti for ti in dag_run.get_task_instances()}


def jobs_named(prefix: str) -> list[str]:
    out = subprocess.run(
        ["sacct", "-a", "-X", "-n", "-P", "-o", "JobName%200", "-S", "now-1hours"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    live = subprocess.run(
        ["squeue", "-h", "-o", "%j"], capture_output=True, text=True, check=True
    ).stdout
    return [n for n in (out + live).split() if n.startswith(prefix)]


def test_clips_arriving_during_the_wait_are_all_planned(
    tmp_path: Path, late_source: Path, ssh_conn_id: str, airflow_db: None, results_db: str
) -> None:
    day = "2024-03-01"
    day_dir = late_source / day
    add_clips(day_dir, "a.m4a", "b.mp3")
    module = load_dag(
        tmp_path,
        uuid.uuid4().hex[:8],
        {
            "rule": "stable",
            "stable_s": STABLE_S,
            "poll_interval_s": 0.5,
            "max_poll_interval_s": 1,
            "deadline_s": 300,
        },
    )
    arrivals: dict[str, float] = {}

    def uploader() -> None:
        """More clips while the task waits (it defers a few seconds into the run), each
        within the stability window of the previous change. Timed, not keyed on the task's
        state: a watcher thread polling the metadata DB did not see the deferral reliably."""
        time.sleep(ARRIVALS_AFTER_S)
        arrivals["first"] = time.time()
        for names in (["c.wav"], ["sub/d.m4a", "notes.txt"]):
            time.sleep(1.5)
            if "/" in names[0]:
                (day_dir / "sub").mkdir(mode=0o755)
            add_clips(day_dir, *names)
        with open(day_dir / "a.m4a", "ab") as fh:  # a clip still being written
            fh.write(b"\0" * 64)
        arrivals["last"] = time.time()

    thread = threading.Thread(target=uploader, daemon=True)
    thread.start()
    state, tis = run_until_plan(module, day)
    thread.join(timeout=5)
    assert state == "success", {t: ti.state for t, ti in tis.items()}
    assert "first" in arrivals and "last" in arrivals, "the uploader did not finish"

    # Every clip, the late ones included, is in the plan the master job wrote.
    with SlurmHook(ssh_conn_id) as ssh:
        staging = ssh.resolve(module.CONFIG.staging_root)
        manifest = json.loads(ssh.read_text(f"{staging}/{day}/manifest.json"))
    planned = sorted(c["clip_id"] for s in manifest["shards"] for c in s["clips"])
    assert planned == [f"{day}/{n}" for n in ("a.m4a", "b.mp3", "c.wav", "sub/d.m4a")]
    assert manifest["listed"] == 4

    # It waited for the listing to be quiet for the window after the last change.
    ready = tis["source_ready"]
    assert ready.end_date.timestamp() >= arrivals["last"] + STABLE_S - 1
    snapshot = ready.xcom_pull(task_ids="source_ready")
    assert (snapshot["clips"], snapshot["files"], snapshot["rule"]) == (4, 5, "stable")
    assert snapshot["clip_bytes"] == 5 * 64


def test_deadline_fails_naming_what_was_missing_and_submits_nothing(
    tmp_path: Path,
    late_source: Path,
    ssh_conn_id: str,
    airflow_db: None,
    results_db: str,
    capfd: pytest.CaptureFixture[str],
) -> None:
    day = "2024-03-02"
    add_clips(late_source / day, "a.m4a", "b.m4a")
    tag = uuid.uuid4().hex[:8]
    module = load_dag(
        tmp_path,
        tag,
        {
            "rule": "marker",
            "marker_name": "_READY",
            "poll_interval_s": 0.5,
            "max_poll_interval_s": 1,
            "deadline_s": 3,
        },
        retries=1,
        retry_delay_s=1,
    )  # the deadline must not be retried
    state, tis = run_until_plan(module, day)
    states = {t: ti.state for t, ti in tis.items()}
    assert state == "failed" and states["source_ready"] == "failed", states
    assert states["write_request"] == states["master"] == "upstream_failed", states
    assert tis["source_ready"].try_number == 1, "a deadline is not retried"
    out = "".join(capfd.readouterr())  # the task log (the task ran in this process)
    expected = f"day {day}: no marker file `_READY` in {late_source / day} after 3s (rule marker, "
    assert f"AirflowFailException: {expected}" in out
    assert "2 clips (128 B), 2 files; last change seen" in out
    assert jobs_named(f"late{tag}") == []


def test_listing_over_ssh_reads_any_file_name_and_a_missing_day(
    late_source: Path, ssh_conn_id: str
) -> None:
    root = late_source / "odd 'root' $(touch pwned)"  # the path is quoted, never run
    day_dir = root / "2024-03-03"
    odd = ["it's a clip; $(touch pwned).m4a", "line\nbreak.wav", "sub/-dash.mp4"]
    (day_dir / "sub").mkdir(parents=True)
    for d in (root, day_dir, day_dir / "sub"):
        d.chmod(0o755)
    add_clips(day_dir, *odd)
    with SlurmHook(ssh_conn_id) as ssh:
        entries = ssh.list_tree(str(day_dir))
        assert ssh.list_tree(str(root / "2024-03-04")) is None
        assert entries is not None, "the day's directory exists"
        assert not ssh.exists("pwned")
    assert sorted(rel for rel, _, _ in entries) == sorted(odd)
    assert {size for _, size, _ in entries} == {64}
    assert all(abs(mtime - time.time()) < 600 for _, _, mtime in entries)
