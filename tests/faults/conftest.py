"""Fixtures of the fault tests: a small source day, a site config per test (its own remote
dirs and job names), and helpers to build the fault's environment."""
from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import sample_clips
from faults_support import CLIPS, DAY, SOURCE_ROOT, SUBMIT_HOME, write_config


@pytest.fixture(scope="session")
def source_day() -> list[str]:
    """CLIPS one-sentence clips of DAY at the source, readable by the submit user."""
    expected = sample_clips.make_day(SOURCE_ROOT, DAY, clips=CLIPS, bad=False,
                                     sentences_per_clip=1)
    subprocess.run(["chmod", "-R", "a+rX", str(SOURCE_ROOT)], check=True)
    return sorted(expected)


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def fault_config(tmp_path: Path, tag: str, ssh_conn_id: str, airflow_db: None,
                 source_day: list[str]) -> Iterator[Callable[..., Path]]:
    """``fault_config(**overrides)`` -> a site config file for this test; its remote dirs
    are removed afterwards."""
    counter = iter(range(100))

    def make(**overrides: Any) -> Path:
        return write_config(tmp_path / f"site-{next(counter)}.json", tag, **overrides)

    yield make
    shutil.rmtree(SUBMIT_HOME / "audio-pipeline-test" / f"faults-{tag}", ignore_errors=True)
