"""Fixtures for the HPC jobs on the real test bed: a release dir the submit user can read and
a staging area it owns."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from slurm_jobs import Bed
from support import REPO


@pytest.fixture(scope="module")
def bed(devcluster: dict[str, str]) -> Iterator[Bed]:
    """A fresh area under /tmp: code copied into a release dir readable by the submit user,
    staging owned by the submit user (the jobs write there, never as root)."""
    root = Path("/tmp") / f"hpc-tests-{uuid.uuid4().hex[:8]}"
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
    yield Bed(devcluster, root, release, source, staging)
    shutil.rmtree(root, ignore_errors=True)
