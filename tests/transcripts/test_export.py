"""Parquet / JSON Lines export against real PostgreSQL: what pyarrow and DuckDB read back is
exactly the results DB's rows, and memory is bounded by the batch, not the range."""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest

from hpc_pipeline.hooks.results_db import ResultsDbHook
from hpc_pipeline.transcripts import export
from support import parquet_query

FIRST, LAST = dt.date(2025, 3, 1), dt.date(2025, 3, 2)


def db_clips(dsn: str, start: dt.date, end: dt.date) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            """SELECT c.clip_id, c.day, c.status, t.text, t.word_count,
                      jsonb_array_length(t.segments)
                 FROM audio_clips c LEFT JOIN transcripts t USING (clip_id)
                WHERE c.day BETWEEN %s AND %s ORDER BY c.clip_id""",
            (start, end),
        ).fetchall()


def db_segments(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            """SELECT t.clip_id, (s.ord - 1)::int, (s.seg->>'start')::float8,
                      (s.seg->>'end')::float8, s.seg->>'text'
                 FROM transcripts t, jsonb_array_elements(t.segments) WITH ORDINALITY s(seg, ord)
                ORDER BY t.clip_id, s.ord"""
        ).fetchall()


def test_parquet_stream_is_the_db_rows(hook: ResultsDbHook, corpus_db: dict[str, str]) -> None:
    with hook.reading() as cur:
        data = b"".join(export.stream(cur, FIRST, LAST, "parquet", segments=False))
    table = pq.read_table(io.BytesIO(data))
    assert table.schema == export.CLIP_SCHEMA
    got = [
        (r["clip_id"], r["day"], r["status"], r["text"], r["word_count"], r["segment_count"])
        for r in table.to_pylist()
    ]
    assert got == db_clips(corpus_db["dsn"], FIRST, LAST)
    failed = [r for r in table.to_pylist() if r["status"] == "failed"]
    assert [(r["clip_id"], r["error_kind"], r["text"]) for r in failed] == [
        ("2025-03-01/d.m4a", "corrupt", None)
    ]
    assert all(r["finished_at"].tzinfo is not None for r in table.to_pylist())


def test_segments_and_jsonl(hook: ResultsDbHook, corpus_db: dict[str, str]) -> None:
    with hook.reading() as cur:
        data = b"".join(export.stream(cur, FIRST, LAST, "parquet", segments=True))
    rows = pq.read_table(io.BytesIO(data)).to_pylist()
    assert [
        (r["clip_id"], r["segment"], r["start_s"], r["end_s"], r["text"]) for r in rows
    ] == db_segments(corpus_db["dsn"])
    with hook.reading() as cur:
        lines = b"".join(export.stream(cur, LAST, LAST, "jsonl", segments=False)).splitlines()
    docs = [json.loads(line) for line in lines]
    assert [(d["clip_id"], d["day"], d["text"]) for d in docs] == [
        (c[0], c[1].isoformat(), c[3]) for c in db_clips(corpus_db["dsn"], LAST, LAST)
    ]


def test_rows_arrive_a_batch_at_a_time(hook: ResultsDbHook) -> None:
    """A server-side cursor hands over ``batch_rows`` rows at a time; each batch is one
    Parquet row group sent on before the next is read (memory flat in the range size)."""
    with hook.reading() as cur:
        batches = list(export.row_batches(cur, FIRST, LAST, False, batch_rows=2))
        assert [len(b) for b in batches] == [2, 2, 2, 2]
        chunks = list(export.parquet_stream(iter(batches), export.CLIP_SCHEMA))
    assert len(chunks) == 5 and all(chunks[:4])  # a chunk per row group, then the footer
    meta = pq.ParquetFile(io.BytesIO(b"".join(chunks))).metadata
    assert (meta.num_row_groups, meta.num_rows) == (4, 8)


def test_day_file_reads_back_in_duckdb(
    hook: ResultsDbHook, corpus_db: dict[str, str], tmp_path: Path
) -> None:
    written = export.export_day_file(hook, FIRST.isoformat(), str(tmp_path / "exports"))
    path = Path(written["parquet"])
    assert path == tmp_path / "exports" / "2025-03-01.parquet" and written["parquet_rows"] == 5
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left
    rows = parquet_query(
        f"SELECT clip_id, day, status, text, word_count, segment_count "
        f"FROM read_parquet('{path}') ORDER BY clip_id"
    )
    assert rows == db_clips(corpus_db["dsn"], FIRST, FIRST)
    (mentions,) = parquet_query(
        f"SELECT count(*) FROM read_parquet('{path}') WHERE text ILIKE '%climate%'"
    )[0]
    assert mentions == 2


@pytest.mark.parametrize("segments", [False, True])
def test_an_empty_range_is_a_valid_empty_file(hook: ResultsDbHook, segments: bool) -> None:
    with hook.reading() as cur:
        data = b"".join(
            export.stream(cur, dt.date(2020, 1, 1), dt.date(2020, 1, 2), "parquet", segments)
        )
    table = pq.read_table(io.BytesIO(data))
    assert table.num_rows == 0 and table.schema == export.schema_for(segments)
