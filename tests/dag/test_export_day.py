"""The DAG's optional ``export_day`` step on the real test bed: after ``record_results`` the
day's Parquet file is in the configured place, DuckDB and pyarrow read back exactly the
results DB's rows, and the day's Asset event names the file."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from pathlib import Path
from types import ModuleType

import psycopg
import pyarrow.parquet as pq

from dag_support import write_config
from support import import_dag, parquet_query


def _import_dag(config: Path) -> ModuleType:
    """The DAG module imported under ``config`` (it reads the site config at import)."""
    previous = os.environ.get("AUDIO_PIPELINE_CONFIG")
    os.environ["AUDIO_PIPELINE_CONFIG"] = str(config)
    try:
        return import_dag("audio_pipeline_daily_export")
    finally:
        if previous is not None:
            os.environ["AUDIO_PIPELINE_CONFIG"] = previous


def test_export_day_writes_the_days_parquet(
    source_day: tuple[str, dict[str, str]],
    results_db: str,
    ssh_conn_id: str,
    airflow_db: None,
    tmp_path: Path,
) -> None:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    day, _ = source_day
    exports = tmp_path / "exports"
    module = _import_dag(
        write_config(tmp_path / "site.json", uuid.uuid4().hex[:8], export_dir=str(exports))
    )
    assert "export_day" in module.dag.task_dict
    assert module.dag.task_dict["record_results"].outlets == []
    run = module.dag.test(run_conf={"date": day})
    tasks = {t.task_id: t.state for t in run.get_task_instances()}
    assert (tasks["record_results"], tasks["export_day"]) == ("success", "success"), tasks

    path = exports / f"{day}.parquet"
    with psycopg.connect(results_db) as conn:
        expected = conn.execute(
            """SELECT c.clip_id, c.status, c.error_kind, t.text, t.word_count
                 FROM audio_clips c LEFT JOIN transcripts t USING (clip_id)
                WHERE c.day = %s ORDER BY c.clip_id""",
            (day,),
        ).fetchall()
    assert len(expected) == 10 and any(r[3] for r in expected)
    assert (
        parquet_query(
            f"SELECT clip_id, status, error_kind, text, word_count "
            f"FROM read_parquet('{path}') ORDER BY clip_id"
        )
        == expected
    )
    assert pq.read_table(path).column("day").to_pylist() == [dt.date.fromisoformat(day)] * 10

    with create_session() as session:
        (event,) = session.query(AssetEvent).filter(AssetEvent.source_run_id == run.run_id).all()
        extra = dict(event.extra)
    assert extra["parquet"] == str(path) and extra["parquet_rows"] == 10
    assert (extra["day"], extra["clips_ok"] + extra["clips_failed"]) == (day, 10)


def test_without_export_dir_record_results_emits_the_event(tmp_path: Path) -> None:
    """Exports are off by default (the site config's ``export_dir`` is null): no step, and
    ``record_results`` emits the day's Asset event as before."""
    from hpc_pipeline.assets import TRANSCRIPTS
    from hpc_pipeline.config import PipelineConfig

    assert PipelineConfig().export_dir is None
    module = _import_dag(write_config(tmp_path / "site.json", "noexport", export_dir=None))
    assert "export_day" not in module.dag.task_dict
    assert module.dag.task_dict["record_results"].outlets == [TRANSCRIPTS]
