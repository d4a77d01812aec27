"""Plain helpers of the fault tests (fixtures live in conftest.py): the DAG loaded with a
fault's site config, a day run with ``dag.test()`` under a fixed logical date, and the
assertions every fault ends with.

A fixed logical date gives a fixed run id, so running the day again re-runs the *same* DAG
run (same plan id, same SLURM job names): what clearing the failed task does in the UI.
Finished SLURM steps are reattached, failed ones resubmitted (only their failed indices).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg

from support import TEST_NS, import_dag, merge, write_config

SOURCE_ROOT = Path(f"/srv/audio-source-faults{TEST_NS}")
DAY = "2026-01-01"
LOGICAL_DATE = dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc)
CLIPS = 2  # the smallest day with more than one clip: "every clip once" has to mean something
SUBMIT_HOME = Path("/home/hpcuser")


def staging_day(tag: str) -> Path:
    """The day's staging dir under a config of ``write_config`` (default staging root)."""
    return SUBMIT_HOME / "audio-pipeline-test" / f"faults-{tag}" / "staging" / DAY


def site_config(path: Path, tag: str, **overrides: Any) -> Path:
    """A site config isolated under ``faults-<tag>`` (remote dirs, job names), one shard, no
    Airflow retries (each test says when a retry happens); nested ``overrides`` merge."""
    defaults: dict[str, Any] = dict(
        job_prefix=f"f{tag}",
        schedule=None,
        shard_size=10,
        poll_interval_s=1,
        max_poll_interval_s=3,
        retention_days=3650,  # DAY is months old: keep its staged audio to look at
    )
    merged = merge(defaults, overrides)
    source_root = merged.pop("source_root", SOURCE_ROOT)  # a test may name its own source
    return write_config(path, f"faults-{tag}", source_root, **merged)


def load_dag(config: Path) -> ModuleType:
    """The DAG module imported with ``config`` (read at import, as the DAG processor does)."""
    os.environ["AUDIO_PIPELINE_CONFIG"] = str(config)
    name = f"audio_pipeline_daily_{uuid.uuid4().hex[:8]}"
    module = import_dag(name)
    return module


@dataclass
class DayRun:
    state: str
    tasks: dict[str, str]
    run_id: str
    tries: dict[str, int]


def run_day(
    dag_module: ModuleType, logical_date: dt.datetime = LOGICAL_DATE, **conf: Any
) -> DayRun:
    """One run of the day (``date`` defaults to DAY); the same ``logical_date`` is the
    same run again (a retry), another one a new run of the day (a new plan)."""
    dag_run = dag_module.dag.test(
        logical_date=logical_date, run_after=logical_date, run_conf={"date": DAY, **conf}
    )
    tis = dag_run.get_task_instances()
    return DayRun(
        dag_run.state,
        {ti.task_id: ti.state for ti in tis},
        dag_run.run_id,
        {ti.task_id: ti.try_number for ti in tis},
    )


def query(dsn: str, sql: str, *args: Any) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, args).fetchall()


def assert_recorded_once(dsn: str, names: list[str], day: str = DAY) -> None:
    """Every clip of the day has exactly one row, ok, with one transcript; the day is complete."""
    rows = query(dsn, "SELECT clip_id, status FROM audio_clips WHERE day = %s", day)
    assert sorted(cid for cid, _ in rows) == sorted(f"{day}/{n}" for n in names), rows
    assert {s for _, s in rows} == {"ok"}, rows
    texts = query(dsn, "SELECT clip_id, text FROM transcripts")
    assert len(texts) == len(names) and all(t.strip() for _, t in texts), texts
    assert query(
        dsn, "SELECT status, clips_ok, clips_missing FROM audio_days WHERE day = %s", day
    ) == [("complete", len(names), 0)]


def result_lines(staging_day: Path) -> list[dict[str, Any]]:
    """Every result line on staging for the day (all plans, all shards); a torn line fails."""
    lines = []
    for path in sorted(staging_day.glob("results/*/shard-*.jsonl")):
        text = path.read_text()
        assert not text or text.endswith("\n"), f"torn last line in {path}: {text[-80:]!r}"
        lines += [json.loads(line) for line in text.splitlines() if line]
    return lines


def job_ids(name: str) -> list[str]:
    """Ids of every SLURM job (array: the array job id) ever named ``name``."""
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-o", "JobID", f"--name={name}", "--starttime=now-1days"],
        capture_output=True,
        text=True,
    ).stdout
    return sorted({line.split("_")[0] for line in out.split()})


def live_jobs(prefix: str) -> dict[str, str]:
    """{job id: name} of the controller's pending/running jobs whose name starts ``prefix``."""
    out = subprocess.run(["squeue", "-h", "-o", "%i|%j|%T"], capture_output=True, text=True).stdout
    return {
        jid: name
        for jid, name, state in (line.split("|") for line in out.splitlines())
        if name.startswith(prefix) and state in ("PENDING", "RUNNING", "CONFIGURING")
    }


class Background:
    """Run ``action`` in a thread once ``ready`` is true (polled), so a fault lands while
    ``dag.test()`` runs the day in the main thread; ``result()`` re-raises its error."""

    def __init__(
        self,
        ready: Callable[[], Any],
        action: Callable[[Any], Any],
        timeout_s: float = 600,
        poll_s: float = 0.2,
    ) -> None:
        self._ready, self._action, self._timeout, self._poll = ready, action, timeout_s, poll_s
        self._error: BaseException | None = None
        self.value: Any = None
        self.fired = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + self._timeout
        try:
            while time.monotonic() < deadline:
                if seen := self._ready():
                    self.value = self._action(seen)
                    self.fired.set()
                    return
                time.sleep(self._poll)
        except BaseException as exc:  # handed to the test thread by result()
            self._error = exc

    def result(self, timeout_s: float = 60) -> Any:
        self._thread.join(timeout_s)
        if self._error:
            raise self._error
        assert self.fired.is_set(), "the fault was never injected"
        return self.value


def shard_pids(staging_marker: str) -> list[int]:
    """Pids of the submit user's running audio shards whose arguments contain
    ``staging_marker`` (a test's own staging path)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"audio_hpc.process" in argv and any(staging_marker.encode() in a for a in argv):
            pids.append(int(proc.name))
    return pids


def assert_modes(root: Path, dir_mode: int, file_mode: int, group: str | None = None) -> int:
    """Every dir and file under ``root`` (itself included) has exactly these permission bits
    (and group); return how many were checked."""
    import grp

    checked = 0
    for path in [root, *root.rglob("*")]:
        st = path.lstat()
        want = dir_mode if path.is_dir() else file_mode
        assert st.st_mode & 0o7777 == want, f"{path}: {oct(st.st_mode & 0o7777)}, want {oct(want)}"
        if group:
            assert grp.getgrgid(st.st_gid).gr_name == group, f"{path}: group {st.st_gid}"
        checked += 1
    return checked
