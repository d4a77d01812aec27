"""Transcripts of a day range as Parquet or JSON Lines, streamed with bounded memory.

Rows come from a server-side cursor a batch at a time; each batch becomes one Parquet row
group (pyarrow) or a block of JSON lines and is handed on before the next is fetched, so
memory stays flat whatever the range. One row per clip (ok and failed), or with
``segments`` one row per transcript segment, always in clip-id order.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

Format = Literal["parquet", "jsonl"]
FORMATS: tuple[str, ...] = ("parquet", "jsonl")
BATCH_ROWS = 5000
MEDIA_TYPES = {"parquet": "application/vnd.apache.parquet", "jsonl": "application/x-ndjson"}

CLIP_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("day", pa.date32()),
        ("status", pa.string()),
        ("error_kind", pa.string()),
        ("duration_s", pa.float64()),
        ("language", pa.string()),
        ("engine", pa.string()),
        ("model", pa.string()),
        ("text", pa.string()),
        ("word_count", pa.int32()),
        ("segment_count", pa.int32()),
        ("finished_at", pa.timestamp("us", tz="UTC")),
    ]
)
SEGMENT_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("day", pa.date32()),
        ("segment", pa.int32()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("text", pa.string()),
        ("language", pa.string()),
    ]
)

# Clip ids start with their day: the clip-id range lets the primary key give clip order.
_RANGE = "c.day BETWEEN %(start)s AND %(end)s AND c.clip_id >= %(lo)s AND c.clip_id < %(hi)s"
_CLIPS_SQL = f"""
    SELECT c.clip_id, c.day, c.status, c.error_kind, c.duration_s,
           coalesce(t.language, c.language), c.engine, c.model, t.text, t.word_count,
           jsonb_array_length(t.segments), c.finished_at
      FROM audio_clips c LEFT JOIN transcripts t ON t.clip_id = c.clip_id
     WHERE {_RANGE} ORDER BY c.clip_id"""
_SEGMENTS_SQL = f"""
    SELECT c.clip_id, c.day, (s.ord - 1)::int, (s.seg->>'start')::float8,
           (s.seg->>'end')::float8, s.seg->>'text', t.language
      FROM audio_clips c JOIN transcripts t ON t.clip_id = c.clip_id
     CROSS JOIN LATERAL jsonb_array_elements(t.segments) WITH ORDINALITY AS s(seg, ord)
     WHERE {_RANGE} ORDER BY c.clip_id, s.ord"""


def schema_for(segments: bool) -> pa.Schema:
    return SEGMENT_SCHEMA if segments else CLIP_SCHEMA


def row_batches(
    cur: Any, start: dt.date, end: dt.date, segments: bool, batch_rows: int = BATCH_ROWS
) -> Iterator[list[tuple[Any, ...]]]:
    """Rows of [start, end] from a server-side cursor opened on ``cur``'s connection (which
    must be inside a transaction), ``batch_rows`` at a time."""
    params = {
        "start": start,
        "end": end,
        "lo": start.isoformat(),
        "hi": (end + dt.timedelta(days=1)).isoformat(),
    }
    with cur.connection.cursor(name="transcripts_export") as server_side:
        server_side.itersize = batch_rows
        server_side.execute(_SEGMENTS_SQL if segments else _CLIPS_SQL, params)
        while rows := server_side.fetchmany(batch_rows):
            yield [tuple(r.values()) if isinstance(r, dict) else tuple(r) for r in rows]


def to_record_batch(rows: list[tuple[Any, ...]], schema: pa.Schema) -> pa.RecordBatch:
    columns = list(zip(*rows))
    return pa.RecordBatch.from_arrays(
        [pa.array(col, type=f.type) for col, f in zip(columns, schema)], schema=schema
    )


class _Spool:
    """A write-only file object for pyarrow whose bytes are taken out after each row group."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._pos = 0
        self.closed = False

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        self._pos += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._pos

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        data, self._parts = b"".join(self._parts), []
        return data


def parquet_stream(batches: Iterator[list[tuple[Any, ...]]], schema: pa.Schema) -> Iterator[bytes]:
    """A Parquet file as byte chunks: one row group per batch, the footer last."""
    spool = _Spool()
    with pq.ParquetWriter(spool, schema, compression="zstd") as writer:
        for rows in batches:
            writer.write_batch(to_record_batch(rows, schema))
            yield spool.take()
    yield spool.take()


def _json_value(value: Any) -> Any:
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return value


def jsonl_stream(batches: Iterator[list[tuple[Any, ...]]], schema: pa.Schema) -> Iterator[bytes]:
    """JSON Lines, one object per row, a batch per chunk."""
    names = schema.names
    for rows in batches:
        yield "".join(
            json.dumps({n: _json_value(v) for n, v in zip(names, row)}, ensure_ascii=False) + "\n"
            for row in rows
        ).encode()


def stream(cur: Any, start: dt.date, end: dt.date, fmt: Format, segments: bool) -> Iterator[bytes]:
    """The export of [start, end] in ``fmt`` as byte chunks."""
    schema = schema_for(segments)
    batches = row_batches(cur, start, end, segments)
    return parquet_stream(batches, schema) if fmt == "parquet" else jsonl_stream(batches, schema)


def write_day(cur: Any, day: dt.date, directory: Path, segments: bool = False) -> tuple[Path, int]:
    """Write ``<directory>/<day>[.segments].parquet`` atomically (a temp file renamed into
    place, so a reader never sees half a file); return (path, rows)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{day.isoformat()}{'.segments' if segments else ''}.parquet"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    schema, rows = schema_for(segments), 0
    try:
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for batch in row_batches(cur, day, day, segments):
                writer.write_batch(to_record_batch(batch, schema))
                rows += len(batch)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path, rows


def export_day_file(db: Any, day: str, directory: str) -> dict[str, Any]:
    """The DAG's ``export_day`` step: the day's clips as ``<directory>/<day>.parquet``, read
    in one snapshot of the results DB ``db`` (a ResultsDbHook); what the Asset event adds."""
    with db.reading() as cur:
        path, rows = write_day(cur, dt.date.fromisoformat(day), Path(directory))
    return {"parquet": str(path), "parquet_rows": rows}
