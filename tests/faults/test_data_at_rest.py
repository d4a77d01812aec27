"""Data at rest: staging on a filesystem other users can reach holds clips, transcripts and
logs readable by the submit user and the site's ``staging_group`` only (dirs 2750, files
0640), whoever wrote them: Airflow over SFTP, the SLURM jobs, or SLURM itself (job logs).
Another local user of the cluster cannot read a clip, a result line or a log; a member of
the group can. (Without ``staging_group`` everything is the owner's alone, 0700 / 0600:
asserted by test_staging_full.)"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from faults_support import DAY, assert_modes, assert_recorded_once, load_dag, run_day
from support import TEST_NS

GROUP = f"audio-readers{TEST_NS}"
READER = f"audio-reader{TEST_NS}"
OTHER = "nobody"


@pytest.fixture(scope="module")
def staging_group() -> str:
    """A group holding the submit user and one reader; ``nobody`` is outside it."""
    subprocess.run(["groupadd", "-f", GROUP], check=True)
    if subprocess.run(["id", READER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "-M", "-N", "-s", "/usr/sbin/nologin", READER], check=True)
    for user in (READER, "hpcuser"):
        subprocess.run(["usermod", "-aG", GROUP, user], check=True)
    return GROUP


@pytest.fixture
def shared_dir(tag: str) -> Iterator[Path]:
    """A directory every user can traverse, like a cluster's /scratch."""
    path = Path(f"/tmp/faults-shared-{tag}")
    path.mkdir(mode=0o755)
    shutil.chown(path, "hpcuser", "hpcuser")
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def read_as(user: str, path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["runuser", "-u", user, "--", "head", "-c", "64", str(path)], capture_output=True
    )


def test_staging_is_readable_by_owner_and_group_only(
    fault_config: Callable[..., Path],
    staging_group: str,
    shared_dir: Path,
    results_db: str,
    source_day: list[str],
) -> None:
    staging = shared_dir / "staging"
    run = run_day(load_dag(fault_config(staging_root=str(staging), staging_group=staging_group)))
    assert run.state == "success", run.tasks
    assert_recorded_once(results_db, source_day)

    day = staging / DAY
    clip = day / "audio" / source_day[0]
    (results,) = day.glob("results/*/shard-0000.jsonl")
    logs = sorted((day / "logs").glob("*.out"))
    assert len(logs) == 3, logs  # master, transfer, audio shard 0
    secret_bearing = [clip, results, logs[-1], day / "request.json", day / "manifest.json"]
    for path in secret_bearing:
        denied = read_as(OTHER, path)
        assert denied.returncode != 0 and b"Permission denied" in denied.stderr, path
        assert read_as(READER, path).returncode == 0, path
    # Every dir and file of the day, by whoever it was written: SFTP, jobs, slurmstepd.
    assert assert_modes(staging, 0o2750, 0o640, staging_group) > 10
