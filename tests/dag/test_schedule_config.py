"""The schedule settings of the typed config reach the DAG: start date, catchup, run limit."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from hpc_pipeline.config import PipelineConfig, load_config
from support import import_dag


def _parse_dag(config: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AUDIO_PIPELINE_CONFIG", str(config))
    module = import_dag("dag_under_test")
    return module.dag


def test_start_date_catchup_and_run_limit_come_from_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "site.json"
    config.write_text(
        json.dumps({"start_date": "2026-11-20", "catchup": True, "max_active_runs": 1})
    )
    dag = _parse_dag(config, monkeypatch)
    assert dag.start_date == dt.datetime(2026, 11, 20, tzinfo=dt.timezone.utc)
    assert dag.catchup is True and dag.max_active_runs == 1
    assert load_config(str(config)).start_datetime == dag.start_date


def test_default_start_date_and_a_bad_one(tmp_path: Path) -> None:
    assert PipelineConfig().start_datetime == dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    config = tmp_path / "site.json"
    config.write_text(json.dumps({"start_date": "2026-02-30"}))
    with pytest.raises(ValueError, match="start_date '2026-02-30' is not a YYYY-MM-DD date"):
        load_config(str(config))
