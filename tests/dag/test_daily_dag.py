"""The whole DAG on the real test bed: sshd, SLURM, FFmpeg, WhisperX tiny.en, PostgreSQL,
with the optional ``export_day`` step on (the day's Parquet file).

Runs with ``dag.test()`` (deferrable operators defer and their trigger runs inline).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pyarrow.parquet as pq
import pytest
from airflow.sdk.exceptions import AirflowFailException

from hpc_pipeline.steps import parse_day
from sample_clips import BAD_CLIPS
from support import parquet_query
from wer_score import corpus_wer

# tiny.en on espeak-ng speech measured 2–6 % corpus WER here (see tests/hpc); 15 % leaves
# room for voice/codec variation while still catching a broken decode path (≥ 50 %).
WER_THRESHOLD = 0.15

SNAPSHOT_SQL = {
    "audio_clips": "SELECT clip_id, status, error_kind, error, duration_s, engine, model, "
    "job_id, array_index, finished_at FROM audio_clips ORDER BY clip_id",
    "transcripts": "SELECT clip_id, text, segments, recorded_at FROM transcripts ORDER BY clip_id",
    "slurm_jobs": "SELECT job_id, array_index, step, state, exit_code, elapsed_s, gpu_seconds "
    "FROM slurm_jobs ORDER BY job_id, array_index",
    "audio_days": "SELECT day, clips_ok, clips_failed, failed_by_reason, audio_seconds, "
    "gpu_seconds FROM audio_days",
}


def query(dsn: str, sql: str, *args: Any) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, args).fetchall()


def run_day(dag_module: ModuleType, **conf: Any) -> tuple[str, dict[str, str]]:
    state, tasks, _ = run_day_with_id(dag_module, **conf)
    return state, tasks


def run_day_with_id(dag_module: ModuleType, **conf: Any) -> tuple[str, dict[str, str], str]:
    dag_run = dag_module.dag.test(run_conf=conf)
    tasks = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    return dag_run.state, tasks, dag_run.run_id


def snapshot(dsn: str) -> dict[str, list[tuple]]:
    return {table: query(dsn, sql) for table, sql in SNAPSHOT_SQL.items()}


def assert_day_exported(results_db: str, day: str, path: Path, run_id: str) -> None:
    """The optional ``export_day`` step (the session's config turns it on): after
    ``record_results`` the day's Parquet file is in the configured place, DuckDB and pyarrow
    read back exactly the results DB's rows, and the day's Asset event names the file."""
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    expected = query(
        results_db,
        """SELECT c.clip_id, c.status, c.error_kind, t.text, t.word_count
             FROM audio_clips c LEFT JOIN transcripts t USING (clip_id)
            WHERE c.day = %s ORDER BY c.clip_id""",
        day,
    )
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
        (event,) = session.query(AssetEvent).filter(AssetEvent.source_run_id == run_id).all()
        extra = dict(event.extra)
    assert extra["parquet"] == str(path) and extra["parquet_rows"] == 10
    assert (extra["day"], extra["clips_ok"] + extra["clips_failed"]) == (day, 10)


def test_bad_date_fails_fast_with_a_clear_message(daily_dag: ModuleType, results_db: str) -> None:
    state, tasks = run_day(daily_dag, date="2024-02-30")
    assert state == "failed"
    assert tasks["resolve_day"] == "failed"
    assert all(
        s in ("upstream_failed", "skipped", None)
        for t, s in tasks.items()
        if t not in ("resolve_day", "ensure_schema")
    )
    with pytest.raises(AirflowFailException, match="calendar date YYYY-MM-DD, got '2024-02-30'"):
        parse_day("2024-02-30", None, dt.date(2026, 1, 1))
    with pytest.raises(AirflowFailException, match="in the future"):
        parse_day("2030-01-01", None, dt.date(2026, 1, 1))
    with pytest.raises(Exception, match="date"):
        run_day(daily_dag, date="yesterday")  # rejected by the param's schema at trigger


def test_a_day_end_to_end_then_rerun_and_reprocess(
    daily_dag: ModuleType,
    results_db: str,
    source_day: tuple[str, dict[str, str]],
    exports_dir: Path,
) -> None:
    day, expected = source_day
    state, tasks, run_id = run_day_with_id(daily_dag, date=day)
    assert state == "success", tasks
    assert tasks["export_day"] == "success", tasks
    assert_day_exported(results_db, day, exports_dir / f"{day}.parquet", run_id)

    clips = {
        cid.split("/", 1)[1]: (status, kind)
        for cid, status, kind in query(
            results_db, "SELECT clip_id, status, error_kind FROM audio_clips WHERE day = %s", day
        )
    }
    assert set(clips) == set(expected), "every clip at the source is accounted for"
    for name, kind in BAD_CLIPS.items():
        assert clips[name] == ("failed", kind), name
    good = {n: t for n, t in expected.items() if not t.startswith("error:")}
    assert all(clips[n] == ("ok", None) for n in good)

    texts = dict(query(results_db, "SELECT split_part(clip_id, '/', 2), text FROM transcripts"))
    measured = corpus_wer((good[n], texts[n]) for n in good)
    assert measured < WER_THRESHOLD, f"WER {measured:.3f}"
    segments = query(results_db, "SELECT segments FROM transcripts")
    assert all(s[0] and s[0][0]["end"] > s[0][0]["start"] for s in segments)

    steps = {step for (step,) in query(results_db, "SELECT step FROM slurm_jobs")}
    assert steps == {"master", "transfer", "audio"}
    assert all(
        state == "COMPLETED" for (state,) in query(results_db, "SELECT state FROM slurm_jobs")
    )
    (day_row,) = query(
        results_db,
        "SELECT status, clips_ok, clips_failed, failed_by_reason, "
        "audio_seconds, gpu_seconds FROM audio_days",
    )
    assert day_row[:3] == ("partial", len(good), len(BAD_CLIPS))
    assert day_row[3] == {kind: 1 for kind in BAD_CLIPS.values()}
    assert day_row[4] > 10 * len(good) and day_row[5] > 0

    # The same day again: nothing planned, nothing changes.
    before = snapshot(results_db)
    state, tasks = run_day(daily_dag, date=day)
    assert state == "success", tasks
    assert tasks["audio"] == "skipped"
    assert snapshot(results_db) == before

    # reprocess=failed plans only the failed clips; transcribed ones are left alone.
    state, tasks = run_day(daily_dag, date=day, reprocess="failed")
    assert state == "success", tasks
    assert query(results_db, "SELECT clips_planned, clips_skipped FROM audio_days") == [
        (len(BAD_CLIPS), len(good))
    ]
    after = snapshot(results_db)
    assert after["transcripts"] == before["transcripts"]
    assert {r[0]: r[1:3] for r in after["audio_clips"]} == {
        r[0]: r[1:3] for r in before["audio_clips"]
    }
