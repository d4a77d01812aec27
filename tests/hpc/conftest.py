"""Fixtures for the HPC jobs on real SLURM: a release dir the submit user can read and a staging
area it owns, on a filesystem every node of the world sees."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from slurm_jobs import Bed
from slurm_worlds import SlurmWorld
from support import REPO


@pytest.fixture(scope="module")
def bed(devcluster: dict[str, str], slurm_world: SlurmWorld) -> Iterator[Bed]:
    """A fresh area in the scratch dir of the module's ``slurm_world`` (tests/slurm_worlds.py;
    the bed: /tmp, the cluster: its shared volume): code copied into a release dir readable
    by the submit user, staging owned by the submit user (the jobs write there, never as
    root)."""
    root = slurm_world.scratch / f"hpc-tests-{uuid.uuid4().hex[:8]}"
    release, source, staging = root / "release", root / "source", root / "staging"
    shutil.copytree(REPO / "hpc" / "slurm", release / "slurm")
    shutil.copytree(
        REPO / "hpc" / "src", release / "src", ignore=shutil.ignore_patterns("__pycache__")
    )
    source.mkdir()
    staging.mkdir()
    user = devcluster["DEVCLUSTER_USER"]
    shutil.chown(staging, user, user)
    subprocess.run(["chmod", "-R", "a+rX", str(root)], check=True)
    yield Bed(devcluster, root, release, source, staging, slurm_world)
    shutil.rmtree(root, ignore_errors=True)
