"""The idempotent per-day load and what the DAG reads back of a day.

Loading a day is one transaction: COPY into temp tables, then one ``INSERT … ON CONFLICT``
per table, so re-running a day converges to the same rows and a crash mid-load leaves the
previous state intact.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from audio_hpc.contract import ClipResult, Manifest
from hpc_pipeline.results.connection import ResultsConnection


@dataclass
class JobRecord:
    """One SLURM job (or array index) of a day, as the submit operators report it."""

    step: str
    job_id: str
    array_index: int
    state: str
    exit_code: str = ""
    elapsed_s: float = 0.0
    node: str = ""
    gpus: int = 0
    submitted_at: str | None = None  # sacct Submit/Start (cluster local time); None = unknown
    started_at: str | None = None


@dataclass
class DayLoad:
    day: str
    plan_id: str
    dag_run_id: str
    manifest: Manifest
    results: Iterable[ClipResult]  # every line, any order of plans; consumed once, streamed
    jobs: list[JobRecord] = field(default_factory=list)


_CLIP_COLS = (
    "clip_id",
    "day",
    "status",
    "error_kind",
    "error",
    "duration_s",
    "language",
    "engine",
    "model",
    "alignment",
    "timings",
    "job_id",
    "array_index",
    "node",
    "finished_at",
)
_TRANSCRIPT_COLS = ("clip_id", "text", "language", "model", "segments", "word_count", "finished_at")
_JOB_COLS = (
    "job_id",
    "array_index",
    "day",
    "step",
    "state",
    "exit_code",
    "elapsed_s",
    "node",
    "gpus",
    "gpu_seconds",
    "submitted_at",
    "started_at",
)


def _set_clause(cols: Iterable[str], keys: tuple[str, ...]) -> str:
    return ", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c not in keys)


class DayLoader(ResultsConnection):
    """Record a day's clips, transcripts and SLURM jobs; read back its summary."""

    def done_clips(self, day: str) -> dict[str, str]:
        """clip_id -> status for every clip of ``day`` already recorded."""
        rows = self.get_records("SELECT clip_id, status FROM audio_clips WHERE day = %s", (day,))
        return {clip_id: status for clip_id, status in rows}

    def day_summary(self, day: str) -> dict[str, Any] | None:
        """The ``audio_days`` row of ``day`` as a dict (None when the day was never recorded)."""
        with self.get_conn() as conn, conn.cursor() as cur:
            cur.execute(
                """SELECT day::text AS day, status, clips_listed, clips_planned,
                                  clips_skipped, clips_ok, clips_failed, clips_missing,
                                  failed_by_reason, audio_seconds, gpu_seconds, wall_seconds,
                                  real_time_factor
                             FROM audio_days WHERE day = %s""",
                (day,),
            )
            row = cur.fetchone()
            return dict(zip([col.name for col in cur.description], row)) if row else None

    def record_day(self, load: DayLoad) -> dict[str, Any]:
        """Upsert the day's clips, transcripts and jobs in one transaction; return the summary.

        A newer outcome replaces an older one, except that a failure never replaces a clip
        already transcribed (a re-run that fails to fetch a clip must not lose its text).
        """
        with self.get_conn() as conn:
            with conn.cursor() as cur:
                self._upsert_day_row(cur, load)
                self._load_clips(cur, load)
                self._load_jobs(cur, load)
                self._copy(
                    cur,
                    "tmp_planned",
                    "SELECT clip_id FROM audio_clips",
                    ("clip_id",),
                    ((c.clip_id,) for c in load.manifest.clips),
                )
                self._refresh_day_totals(cur, load.day)
            conn.commit()
        summary = self.day_summary(load.day)
        assert summary is not None
        return summary

    @staticmethod
    def _upsert_day_row(cur: Any, load: DayLoad) -> None:
        cur.execute(
            """INSERT INTO audio_days (day, plan_id, dag_run_id, clips_listed, clips_planned,
                                      clips_skipped)
               VALUES (%s, %s, %s, %s, %s, %s)
               ON CONFLICT (day) DO UPDATE SET plan_id = EXCLUDED.plan_id,
                   dag_run_id = EXCLUDED.dag_run_id, clips_listed = EXCLUDED.clips_listed,
                   clips_planned = EXCLUDED.clips_planned,
                   clips_skipped = EXCLUDED.clips_skipped""",
            (
                load.day,
                load.plan_id,
                load.dag_run_id,
                load.manifest.listed,
                len(load.manifest.clips),
                load.manifest.skipped,
            ),
        )

    @staticmethod
    def _copy(
        cur: Any, temp: str, shape_sql: str, cols: tuple[str, ...], rows: Iterable[tuple]
    ) -> None:
        """COPY ``rows`` into a new temp table shaped like the ``shape_sql`` query."""
        cur.execute(f"CREATE TEMP TABLE {temp} ON COMMIT DROP AS {shape_sql} LIMIT 0")
        with cur.copy(f"COPY {temp} ({', '.join(cols)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def _load_clips(self, cur: Any, load: DayLoad) -> None:
        """Stream every result line into one temp table (COPY, constant memory whatever the
        day's size), keep the newest line per clip there (latest ``finished_at``, the later
        line on a tie, as ``latest_per_clip``), then upsert clips and transcripts from it."""
        rows = (
            (
                r.clip_id,
                load.day,
                r.status,
                r.error_kind or None,
                r.error or None,
                r.duration_s,
                r.language or None,
                r.engine or None,
                r.model or None,
                r.alignment or None,
                json.dumps(r.timings),
                r.job_id or None,
                r.array_index,
                r.node or None,
                r.finished_at,
                *(
                    (r.text, json.dumps(r.segments, ensure_ascii=False), len(r.text.split()))
                    if r.status == "ok"
                    else (None, None, None)
                ),
                seq,
            )
            for seq, r in enumerate(load.results)
        )
        self._copy(
            cur,
            "tmp_results",
            f"SELECT {', '.join('c.' + c for c in _CLIP_COLS)}, t.text, t.segments, "
            "t.word_count, 0::bigint AS seq FROM audio_clips c CROSS JOIN transcripts t",
            _CLIP_COLS + ("text", "segments", "word_count", "seq"),
            rows,
        )
        cur.execute("""CREATE TEMP TABLE tmp_latest ON COMMIT DROP AS
                         SELECT DISTINCT ON (clip_id) * FROM tmp_results
                          ORDER BY clip_id, finished_at DESC, seq DESC""")
        # temp tables have no statistics: without them the joins below go nested-loop
        cur.execute("ANALYZE tmp_latest (clip_id, finished_at, status)")
        cur.execute(
            f"""INSERT INTO audio_clips ({", ".join(_CLIP_COLS)})
                SELECT {", ".join(_CLIP_COLS)} FROM tmp_latest t
                 WHERE NOT EXISTS (   -- rows the upsert would leave alone: not even locked
                       SELECT 1 FROM audio_clips a WHERE a.clip_id = t.clip_id
                          AND (a.finished_at >= t.finished_at
                               OR (a.status = 'ok' AND t.status = 'failed')))
                ON CONFLICT (clip_id) DO UPDATE SET {_set_clause(_CLIP_COLS, ("clip_id",))},
                    recorded_at = now()
                WHERE audio_clips.finished_at < EXCLUDED.finished_at
                  AND NOT (audio_clips.status = 'ok' AND EXCLUDED.status = 'failed')"""
        )
        cols = _TRANSCRIPT_COLS[:-1]
        cur.execute(
            f"""INSERT INTO transcripts ({", ".join(cols)})
                SELECT {", ".join("t." + c for c in cols)} FROM tmp_latest t
                JOIN audio_clips c ON c.clip_id = t.clip_id AND c.finished_at = t.finished_at
                                  AND c.status = 'ok'
                WHERE t.status = 'ok' AND NOT EXISTS (
                      SELECT 1 FROM transcripts x WHERE x.clip_id = t.clip_id
                         AND (x.text, x.segments) IS NOT DISTINCT FROM (t.text, t.segments))
                ON CONFLICT (clip_id) DO UPDATE SET {_set_clause(cols, ("clip_id",))},
                    recorded_at = now()
                WHERE (transcripts.text, transcripts.segments)
                      IS DISTINCT FROM (EXCLUDED.text, EXCLUDED.segments)"""
        )

    def _load_jobs(self, cur: Any, load: DayLoad) -> None:
        rows = [
            (
                j.job_id,
                j.array_index,
                load.day,
                j.step,
                j.state,
                j.exit_code or None,
                j.elapsed_s,
                j.node or None,
                j.gpus,
                j.gpus * j.elapsed_s,
                j.submitted_at,
                j.started_at,
            )
            for j in load.jobs
        ]
        self._copy(
            cur, "tmp_slurm_jobs", f"SELECT {', '.join(_JOB_COLS)} FROM slurm_jobs", _JOB_COLS, rows
        )
        cur.execute(
            f"""INSERT INTO slurm_jobs ({", ".join(_JOB_COLS)})
                SELECT {", ".join(_JOB_COLS)} FROM tmp_slurm_jobs
                ON CONFLICT (job_id, array_index) DO UPDATE
                    SET {_set_clause(_JOB_COLS, ("job_id", "array_index"))}, recorded_at = now()
                WHERE (slurm_jobs.state, slurm_jobs.elapsed_s, slurm_jobs.exit_code,
                       slurm_jobs.submitted_at, slurm_jobs.started_at)
                      IS DISTINCT FROM (EXCLUDED.state, EXCLUDED.elapsed_s, EXCLUDED.exit_code,
                                        EXCLUDED.submitted_at, EXCLUDED.started_at)"""
        )

    @staticmethod
    def _refresh_day_totals(cur: Any, day: str) -> None:
        """Derive the day's numbers from the rows themselves (never from counters kept aside)."""
        cur.execute(
            """WITH c AS (
                 SELECT count(*) FILTER (WHERE status = 'ok')     AS ok,
                        count(*) FILTER (WHERE status = 'failed') AS failed,
                        coalesce(sum(duration_s) FILTER (WHERE status = 'ok'), 0) AS audio_s
                   FROM audio_clips WHERE day = %(day)s),
               m AS (
                 SELECT count(*) AS missing FROM tmp_planned p
                  WHERE NOT EXISTS (SELECT 1 FROM audio_clips a WHERE a.clip_id = p.clip_id)),
               r AS (
                 SELECT coalesce(jsonb_object_agg(error_kind, n), '{}'::jsonb) AS by_reason
                   FROM (SELECT error_kind, count(*) AS n FROM audio_clips
                          WHERE day = %(day)s AND status = 'failed' GROUP BY error_kind) x),
               j AS (
                 SELECT coalesce(sum(gpu_seconds), 0) AS gpu_s,
                        coalesce(sum(elapsed_s), 0)   AS wall_s
                   FROM slurm_jobs WHERE day = %(day)s AND step = 'audio')
               UPDATE audio_days d
                  SET clips_ok = c.ok, clips_failed = c.failed, failed_by_reason = r.by_reason,
                      audio_seconds = c.audio_s, gpu_seconds = j.gpu_s, wall_seconds = j.wall_s,
                      real_time_factor = CASE WHEN j.wall_s > 0 THEN c.audio_s / j.wall_s END,
                      clips_missing = m.missing,
                      status = CASE WHEN m.missing > 0 THEN 'incomplete'
                                    WHEN c.failed > 0 THEN 'partial' ELSE 'complete' END,
                      recorded_at = now()
                 FROM c, m, r, j
                WHERE d.day = %(day)s""",
            {"day": day},
        )
