"""The DAG's optional ``export_day`` step: off by default. With ``export_dir`` set, a day's
Parquet file and its Asset event are asserted on the daily test's own day
(test_daily_dag.py: ``assert_day_exported``), which runs with the step on."""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

from dag_support import write_config
from support import import_dag


def _import_dag(config: Path) -> ModuleType:
    """The DAG module imported under ``config`` (it reads the site config at import)."""
    previous = os.environ.get("AUDIO_PIPELINE_CONFIG")
    os.environ["AUDIO_PIPELINE_CONFIG"] = str(config)
    try:
        return import_dag("audio_pipeline_daily_export")
    finally:
        if previous is not None:
            os.environ["AUDIO_PIPELINE_CONFIG"] = previous


def test_export_dir_adds_the_step_that_emits_the_event(tmp_path: Path) -> None:
    """With ``export_dir`` the day's Asset event moves from ``record_results`` to
    ``export_day``, which runs after it (the event then names the Parquet file)."""
    from hpc_pipeline.assets import TRANSCRIPTS

    module = _import_dag(write_config(tmp_path / "site.json", "export", export_dir=str(tmp_path)))
    assert module.dag.task_dict["record_results"].outlets == []
    assert module.dag.task_dict["export_day"].outlets == [TRANSCRIPTS]
    assert "record_results" in module.dag.task_dict["export_day"].upstream_task_ids


def test_without_export_dir_record_results_emits_the_event(tmp_path: Path) -> None:
    """Exports are off by default (the site config's ``export_dir`` is null): no step, and
    ``record_results`` emits the day's Asset event as before."""
    from hpc_pipeline.assets import TRANSCRIPTS
    from hpc_pipeline.config import PipelineConfig

    assert PipelineConfig().export_dir is None
    module = _import_dag(write_config(tmp_path / "site.json", "noexport", export_dir=None))
    assert "export_day" not in module.dag.task_dict
    assert module.dag.task_dict["record_results"].outlets == [TRANSCRIPTS]
