"""Fixtures for the whole-DAG tests: a source day of synthesized clips, a site config, the
DAG module loaded with it."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import uuid
from pathlib import Path
from types import ModuleType

import pytest

import sample_clips
from dag_support import DAY, REPO, SOURCE_ROOT, write_config


@pytest.fixture(scope="session")
def source_day() -> tuple[str, dict[str, str]]:
    """The day at the source (readable by the submit user): (day, {clip name: expected})."""
    expected = sample_clips.make_day(SOURCE_ROOT, DAY, clips=6)
    subprocess.run(["chmod", "-R", "a+rX", str(SOURCE_ROOT)], check=True)
    return DAY, expected


@pytest.fixture(scope="session")
def pipeline_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = write_config(tmp_path_factory.mktemp("config") / "site.json", uuid.uuid4().hex[:8])
    os.environ["AUDIO_PIPELINE_CONFIG"] = str(path)
    return path


@pytest.fixture(scope="session")
def daily_dag(pipeline_config: Path, ssh_conn_id: str, airflow_db: None) -> ModuleType:
    """The DAG module, imported the way the DAG processor does, with the test's config."""
    spec = importlib.util.spec_from_file_location("audio_pipeline_daily",
                                                  REPO / "dags" / "audio_pipeline_daily.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

