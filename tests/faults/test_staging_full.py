"""Fault: the staging filesystem fills up (a small tmpfs as staging), first under the
transfer, then under the audio shard. Each time a red task says the staging is full and
where; nothing half-written is counted as done; once space is freed the retry (the same
run again) completes the day with every clip recorded once."""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from faults_support import (
    DAY,
    SOURCE_ROOT,
    Background,
    assert_modes,
    assert_recorded_once,
    live_jobs,
    load_dag,
    query,
    result_lines,
    run_day,
)

ROOM_FOR_SMALL_FILES = 24 * 1024  # request/manifest/logs fit (a 4 KiB page each), the clips do not


@pytest.fixture
def tmpfs(tag: str) -> Iterator[Path]:
    mount = Path(f"/tmp/faults-tmpfs-{tag}")
    mount.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", str(mount)], check=True
    )
    shutil.chown(mount, "hpcuser", "hpcuser")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        mount.rmdir()


def fill(mount: Path, leave: int = 0) -> None:
    """Take all free space of ``mount`` but ``leave`` bytes (as root, like another tenant)."""
    st = os.statvfs(mount)
    size = max(0, st.f_bavail * st.f_frsize - leave)
    with open(mount / "filler", "ab") as fh:
        try:
            fh.write(b"\0" * size)
        except OSError:
            pass  # tmpfs rounds to pages: "full" is what we want


def free(mount: Path) -> None:
    (mount / "filler").unlink()


def test_staging_full(
    fault_config: Callable[..., Path],
    tmpfs: Path,
    results_db: str,
    source_day: list[str],
    tag: str,
    capfd: pytest.CaptureFixture,
) -> None:
    day_dir = tmpfs / "staging" / DAY
    sizes = sum(p.stat().st_size for p in (SOURCE_ROOT / DAY).iterdir())
    assert sizes > ROOM_FOR_SMALL_FILES + 16 * 1024, f"clips too small to overflow: {sizes}"
    dag = load_dag(fault_config(staging_root=str(tmpfs / "staging")))

    # 1. Full before the clips arrive: the transfer is red and says where.
    fill(tmpfs, leave=ROOM_FOR_SMALL_FILES)
    run = run_day(dag)
    out = capfd.readouterr()
    log = out.out + out.err
    assert run.state == "failed", run.tasks
    assert run.tasks["transfer"] == "failed" and run.tasks["audio"] == "upstream_failed", run.tasks
    assert f"staging is full: cannot write {day_dir}/audio/" in log, log[-3000:]
    assert "No space left on device" in log
    assert query(results_db, "SELECT count(*) FROM audio_clips") == [(0,)]
    assert not list((day_dir / "audio").glob("clip_*")), "no half-copied clip left as staged"

    # 2. Space freed, but the disk fills again as soon as the audio shard is submitted.
    free(tmpfs)
    filled = Background(lambda: live_jobs(f"f{tag}-audio-"), lambda jobs: fill(tmpfs))
    run = run_day(dag)
    filled.result()
    out = capfd.readouterr()
    log = out.out + out.err
    assert run.tasks["transfer"] == "success" and run.tasks["audio"] == "failed", run.tasks
    assert f"STAGING FULL: the filesystem holding {day_dir}/logs (mounted at {tmpfs})" in log, log[
        -3000:
    ]
    assert result_lines(day_dir) == [], "nothing written, nothing torn"
    assert query(results_db, "SELECT count(*) FROM audio_clips WHERE status = 'ok'") == [(0,)]

    # 3. Space freed: the same run again completes the day, each clip transcribed once.
    free(tmpfs)
    run = run_day(dag)
    assert run.state == "success", run.tasks
    assert_recorded_once(results_db, source_day)
    per_clip = collections.Counter(line["clip_id"] for line in result_lines(day_dir))
    assert per_clip == {f"{DAY}/{n}": 1 for n in source_day}
    # No staging_group: what Airflow, the jobs and SLURM wrote is the submit user's alone.
    assert assert_modes(tmpfs / "staging", 0o700, 0o600) > 10
