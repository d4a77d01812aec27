"""The results database: versioned migrations, done-lists, and the idempotent per-day load.

Every write goes through this hook (the one place for SQL). Loading a day is one transaction:
COPY into temp tables, then one ``INSERT … ON CONFLICT`` per table, so re-running a day
converges to the same rows and a crash mid-load leaves the previous state intact.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import queue
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from airflow.providers.postgres.hooks.postgres import PostgresHook
from psycopg.rows import dict_row

from hpc_pipeline.pipeline_contract import ClipResult, Manifest

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "sql" / "migrations"
_LOCK_KEY = 0x617564696F  # advisory lock id ("audio"): one migrator at a time


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
    results: Iterable[ClipResult]   # every line, any order of plans; consumed once, streamed
    jobs: list[JobRecord] = field(default_factory=list)


_CLIP_COLS = ("clip_id", "day", "status", "error_kind", "error", "duration_s", "language",
              "engine", "model", "alignment", "timings", "job_id", "array_index", "node",
              "finished_at")
_TRANSCRIPT_COLS = ("clip_id", "text", "language", "model", "segments", "word_count",
                    "finished_at")
_JOB_COLS = ("job_id", "array_index", "day", "step", "state", "exit_code", "elapsed_s", "node",
             "gpus", "gpu_seconds", "submitted_at", "started_at")


# The per-day numbers every monitoring read returns (alias ``d`` = audio_days).
_DAY_COLS = ", ".join(f"d.{c}" for c in (
    "clips_listed", "clips_planned", "clips_skipped", "clips_ok", "clips_failed",
    "clips_missing", "failed_by_reason", "audio_seconds", "gpu_seconds", "real_time_factor"))


# The newest complete day, not after %(until)s when given: health, /metrics and the "no
# complete day for N days" alert all read it here.
_LAST_COMPLETE_DAY = ("SELECT max(day) AS day FROM audio_days WHERE status = 'complete' "
                      "AND (%(until)s::date IS NULL OR day <= %(until)s::date)")


def _set_clause(cols: Iterable[str], keys: tuple[str, ...]) -> str:
    return ", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c not in keys)


class ResultsDbHook(PostgresHook):
    """PostgreSQL results DB (its own Airflow connection, not Airflow's metadata DB)."""

    def __init__(self, postgres_conn_id: str = "audio_results_db", *, keep_readers: int = 0,
                 **kwargs: Any) -> None:
        """``keep_readers``: read-only connections kept open between monitoring reads, for a
        long-lived reader (the api-server plugin); opening one costs ~50 ms (SCRAM auth)."""
        super().__init__(postgres_conn_id=postgres_conn_id, **kwargs)
        self._idle: queue.LifoQueue[Any] = queue.LifoQueue(maxsize=max(keep_readers, 1))
        self._keep_readers = keep_readers

    # -- schema ----------------------------------------------------------------------------
    def migrate(self) -> list[str]:
        """Apply pending ``sql/migrations/NNNN_*.sql`` in order; return the versions applied.

        A migration already applied whose file changed since is an error, not a silent skip.
        """
        applied_now: list[str] = []
        with self.get_conn() as conn:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
                try:
                    cur.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
                                     version text PRIMARY KEY, checksum text NOT NULL,
                                     applied_at timestamptz NOT NULL DEFAULT now())""")
                    conn.commit()
                    cur.execute("SELECT version, checksum FROM schema_migrations")
                    done = dict(cur.fetchall())
                    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
                        sql = path.read_text(encoding="utf-8")
                        checksum = hashlib.sha256(sql.encode()).hexdigest()
                        version = path.stem
                        if version in done:
                            if done[version] != checksum:
                                raise RuntimeError(
                                    f"migration {version} was edited after it was applied; "
                                    "add a new migration instead")
                            continue
                        cur.execute(sql)
                        cur.execute("INSERT INTO schema_migrations (version, checksum) "
                                    "VALUES (%s, %s)", (version, checksum))
                        conn.commit()
                        applied_now.append(version)
                finally:
                    conn.rollback()
                    cur.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
                    conn.commit()
        return applied_now

    # -- reads -----------------------------------------------------------------------------
    def done_clips(self, day: str) -> dict[str, str]:
        """clip_id -> status for every clip of ``day`` already recorded."""
        rows = self.get_records("SELECT clip_id, status FROM audio_clips WHERE day = %s", (day,))
        return {clip_id: status for clip_id, status in rows}

    def day_summary(self, day: str) -> dict[str, Any] | None:
        """The ``audio_days`` row of ``day`` as a dict (None when the day was never recorded)."""
        with self.get_conn() as conn, conn.cursor() as cur:
            cur.execute("""SELECT day::text AS day, status, clips_listed, clips_planned,
                                  clips_skipped, clips_ok, clips_failed, clips_missing,
                                  failed_by_reason, audio_seconds, gpu_seconds, wall_seconds,
                                  real_time_factor
                             FROM audio_days WHERE day = %s""", (day,))
            row = cur.fetchone()
            return dict(zip([col.name for col in cur.description], row)) if row else None

    # -- monitoring reads (hpc_pipeline.monitoring: the status page, its API, metrics) --------
    @contextlib.contextmanager
    def _reading(self) -> Iterator[Any]:
        """A dict-row cursor in a read-only transaction (one snapshot for all its queries).

        The connection goes back to the idle stack afterwards when ``keep_readers`` allows;
        an idle one that died (server restart) is noticed by a ping and replaced."""
        conn = None
        while conn is None:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = self.get_conn()
                conn.autocommit = True      # each read group is its own BEGIN READ ONLY
                conn.read_only = True
                break
            try:
                conn.execute("SELECT 1")
            except Exception:   # dead socket: drop it, try the next one or a new one
                conn.close()
                conn = None
        try:
            with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
                yield cur
        except BaseException:
            conn.close()
            raise
        if self._keep_readers and not self._idle.full():
            self._idle.put_nowait(conn)
        else:
            conn.close()

    def reading(self) -> contextlib.AbstractContextManager[Any]:
        """The read transaction of ``_reading`` for the read-side modules
        (``hpc_pipeline.transcripts``: search, export)."""
        return self._reading()

    def _rows(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        with self._reading() as cur:
            cur.execute(sql, params)
            return cur.fetchall()

    def days_between(self, start: dt.date, end: dt.date) -> list[dict[str, Any]]:
        """Every calendar day of [start, end], oldest first; ``status`` is ``not_run`` (and
        the counts None) for a day never recorded. ``queue_wait_s`` maps each step to the
        longest queue wait (sacct Submit -> Start) of its jobs / array indices that day."""
        return self._rows(
            f"""SELECT g.day::date AS day, coalesce(d.status, 'not_run') AS status,
                       {_DAY_COLS}, coalesce(q.waits, '{{}}'::jsonb) AS queue_wait_s
                  FROM generate_series(%(start)s::date, %(end)s::date, interval '1 day') g(day)
                  LEFT JOIN audio_days d ON d.day = g.day
                  LEFT JOIN (SELECT day, jsonb_object_agg(step, wait) AS waits
                               FROM (SELECT day, step, max(queue_wait_s) AS wait FROM slurm_jobs
                                      WHERE day BETWEEN %(start)s AND %(end)s
                                        AND queue_wait_s IS NOT NULL
                                      GROUP BY day, step) w
                              GROUP BY day) q ON q.day = g.day
                 ORDER BY g.day""", {"start": start, "end": end})

    def day_detail(self, day: dt.date) -> dict[str, Any] | None:
        """One recorded day in full, with every SLURM job (array index) of its steps."""
        with self._reading() as cur:
            cur.execute(f"""SELECT d.day, d.status, {_DAY_COLS}, d.plan_id, d.dag_run_id,
                                   d.wall_seconds, d.recorded_at
                              FROM audio_days d WHERE d.day = %(day)s""", {"day": day})
            row = cur.fetchone()
            if row is None:
                return None
            cur.execute("""SELECT step, job_id, array_index, state, exit_code, node, gpus,
                                  gpu_seconds, elapsed_s, submitted_at, started_at, queue_wait_s
                             FROM slurm_jobs WHERE day = %(day)s
                            ORDER BY array_position(ARRAY['master', 'transfer', 'audio'], step),
                                     step, length(job_id), job_id, array_index""", {"day": day})
            row["jobs"] = cur.fetchall()
            return row

    def day_clips(self, day: dt.date, *, status: str | None, error_kind: str | None,
                  after: str | None, limit: int) -> tuple[int, list[dict[str, Any]]]:
        """(how many clips match, the page of them after clip id ``after``, in clip order)."""
        params = {"day": day, "status": status, "kind": error_kind, "after": after,
                  "limit": limit}
        where = """day = %(day)s AND (%(status)s::text IS NULL OR status = %(status)s)
                   AND (%(kind)s::text IS NULL OR error_kind = %(kind)s)"""
        with self._reading() as cur:
            cur.execute(f"SELECT count(*) AS n FROM audio_clips WHERE {where}", params)
            total = cur.fetchone()["n"]
            cur.execute(f"""SELECT clip_id, status, error_kind, error, duration_s, language,
                                   engine, model, job_id, array_index, node, finished_at
                              FROM audio_clips
                             WHERE {where} AND (%(after)s::text IS NULL OR clip_id > %(after)s)
                             ORDER BY clip_id LIMIT %(limit)s""", params)
            return total, cur.fetchall()

    def transcript(self, clip_id: str) -> dict[str, Any] | None:
        rows = self._rows("""SELECT t.clip_id, c.day, t.text, t.language, t.model, t.segments,
                                    t.word_count, c.duration_s, t.recorded_at
                               FROM transcripts t JOIN audio_clips c USING (clip_id)
                              WHERE t.clip_id = %(clip_id)s""", {"clip_id": clip_id})
        return rows[0] if rows else None

    def health(self, since: dt.date, until: dt.date) -> dict[str, Any]:
        """Last complete day, and the days of [since, until] never recorded / not complete."""
        with self._reading() as cur:
            out = {"last_complete_day": self._last_complete(cur, None)}
            cur.execute("SELECT max(day) AS day FROM audio_days")
            out["last_recorded_day"] = cur.fetchone()["day"]
            cur.execute("""SELECT g.day::date AS day, d.status
                             FROM generate_series(%(since)s::date, %(until)s::date,
                                                  interval '1 day') g(day)
                             LEFT JOIN audio_days d ON d.day = g.day
                            WHERE d.status IS DISTINCT FROM 'complete' ORDER BY g.day""",
                        {"since": since, "until": until})
            rows = cur.fetchall()
        out["days_missing"] = [r["day"] for r in rows if r["status"] is None]
        out["days_not_complete"] = [r["day"] for r in rows if r["status"] is not None]
        return out

    def metrics_snapshot(self) -> dict[str, Any]:
        """What /metrics exports: days per status, the latest recorded day, the last complete."""
        with self._reading() as cur:
            cur.execute("SELECT status, count(*) AS n FROM audio_days GROUP BY status")
            by_status = {r["status"]: r["n"] for r in cur.fetchall()}
            cur.execute(f"SELECT d.day, d.status, {_DAY_COLS} FROM audio_days d "
                        "ORDER BY d.day DESC LIMIT 1")
            last = cur.fetchone()
            return {"days_by_status": by_status, "last_day": last,
                    "last_complete_day": self._last_complete(cur, None)}

    def last_complete_day(self, on_or_before: str) -> str | None:
        """The newest ``complete`` day not after ``on_or_before`` (None: none ever was)."""
        with self._reading() as cur:
            day = self._last_complete(cur, on_or_before)
        return day.isoformat() if day else None

    @staticmethod
    def _last_complete(cur: Any, until: dt.date | str | None) -> dt.date | None:
        cur.execute(_LAST_COMPLETE_DAY, {"until": until})
        return cur.fetchone()["day"]

    # -- alerts ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def alerts_to_send(self, day: str, run_id: str, problems: dict[str, str]
                       ) -> Iterator[list[str]]:
        """Yield the kinds of ``problems`` (``{kind: message}``) not alerted yet for ``day``
        in run ``run_id`` (see ``hpc_pipeline.alerts`` for why that key).

        They are recorded as sent when the block ends without error, and not at all when it
        raises (the mail did not go: the task's retry sends it). Their rows stay locked until
        then, so a second attempt at the same time waits and then finds them sent."""
        kinds = list(problems)
        with self.get_conn() as conn:
            with conn.cursor() as cur:
                cur.execute("""INSERT INTO alerts_sent (day, kind, dag_run_id, message)
                               SELECT %s, k, %s, m FROM unnest(%s::text[], %s::text[]) AS a(k, m)
                               ON CONFLICT (day, kind, dag_run_id) DO NOTHING RETURNING kind""",
                            (day, run_id, kinds, [problems[k] for k in kinds]))
                new = {row[0] for row in cur.fetchall()}
            try:
                yield [k for k in kinds if k in new]
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

    # -- one run per day -------------------------------------------------------------------
    def claim_day(self, day: str, run_id: str, run_active: Callable[[str], bool]) -> str | None:
        """Claim ``day`` for ``run_id``; return the run holding it instead when that run is
        still active (``run_active``). Row-locked, so two runs claiming at once serialise."""
        with self.get_conn() as conn, conn.cursor() as cur:
            cur.execute("INSERT INTO day_claims (day, dag_run_id) VALUES (%s, %s) "
                        "ON CONFLICT (day) DO NOTHING", (day, run_id))
            cur.execute("SELECT dag_run_id FROM day_claims WHERE day = %s FOR UPDATE", (day,))
            (holder,) = cur.fetchone()
            if holder != run_id:
                if run_active(holder):
                    conn.rollback()
                    return holder
                cur.execute("UPDATE day_claims SET dag_run_id = %s, claimed_at = now() "
                            "WHERE day = %s", (run_id, day))
            conn.commit()
        return None

    # -- the load --------------------------------------------------------------------------
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
                self._copy(cur, "tmp_planned", "SELECT clip_id FROM audio_clips", ("clip_id",),
                           ((c.clip_id,) for c in load.manifest.clips))
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
                   clips_planned = EXCLUDED.clips_planned, clips_skipped = EXCLUDED.clips_skipped""",
            (load.day, load.plan_id, load.dag_run_id, load.manifest.listed,
             len(load.manifest.clips), load.manifest.skipped))

    @staticmethod
    def _copy(cur: Any, temp: str, shape_sql: str, cols: tuple[str, ...],
              rows: Iterable[tuple]) -> None:
        """COPY ``rows`` into a new temp table shaped like the ``shape_sql`` query."""
        cur.execute(f"CREATE TEMP TABLE {temp} ON COMMIT DROP AS {shape_sql} LIMIT 0")
        with cur.copy(f"COPY {temp} ({', '.join(cols)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def _load_clips(self, cur: Any, load: DayLoad) -> None:
        """Stream every result line into one temp table (COPY, constant memory whatever the
        day's size), keep the newest line per clip there (latest ``finished_at``, the later
        line on a tie, as ``latest_per_clip``), then upsert clips and transcripts from it."""
        rows = ((r.clip_id, load.day, r.status, r.error_kind or None, r.error or None,
                 r.duration_s, r.language or None, r.engine or None, r.model or None,
                 r.alignment or None, json.dumps(r.timings), r.job_id or None, r.array_index,
                 r.node or None, r.finished_at,
                 *((r.text, json.dumps(r.segments, ensure_ascii=False), len(r.text.split()))
                   if r.status == "ok" else (None, None, None)), seq)
                for seq, r in enumerate(load.results))
        self._copy(cur, "tmp_results",
                   f"SELECT {', '.join('c.' + c for c in _CLIP_COLS)}, t.text, t.segments, "
                   "t.word_count, 0::bigint AS seq FROM audio_clips c CROSS JOIN transcripts t",
                   _CLIP_COLS + ("text", "segments", "word_count", "seq"), rows)
        cur.execute("""CREATE TEMP TABLE tmp_latest ON COMMIT DROP AS
                         SELECT DISTINCT ON (clip_id) * FROM tmp_results
                          ORDER BY clip_id, finished_at DESC, seq DESC""")
        # temp tables have no statistics: without them the joins below go nested-loop
        cur.execute("ANALYZE tmp_latest (clip_id, finished_at, status)")
        cur.execute(
            f"""INSERT INTO audio_clips ({', '.join(_CLIP_COLS)})
                SELECT {', '.join(_CLIP_COLS)} FROM tmp_latest t
                 WHERE NOT EXISTS (   -- rows the upsert would leave alone: not even locked
                       SELECT 1 FROM audio_clips a WHERE a.clip_id = t.clip_id
                          AND (a.finished_at >= t.finished_at
                               OR (a.status = 'ok' AND t.status = 'failed')))
                ON CONFLICT (clip_id) DO UPDATE SET {_set_clause(_CLIP_COLS, ('clip_id',))},
                    recorded_at = now()
                WHERE audio_clips.finished_at < EXCLUDED.finished_at
                  AND NOT (audio_clips.status = 'ok' AND EXCLUDED.status = 'failed')""")
        cols = _TRANSCRIPT_COLS[:-1]
        cur.execute(
            f"""INSERT INTO transcripts ({', '.join(cols)})
                SELECT {', '.join('t.' + c for c in cols)} FROM tmp_latest t
                JOIN audio_clips c ON c.clip_id = t.clip_id AND c.finished_at = t.finished_at
                                  AND c.status = 'ok'
                WHERE t.status = 'ok' AND NOT EXISTS (
                      SELECT 1 FROM transcripts x WHERE x.clip_id = t.clip_id
                         AND (x.text, x.segments) IS NOT DISTINCT FROM (t.text, t.segments))
                ON CONFLICT (clip_id) DO UPDATE SET {_set_clause(cols, ('clip_id',))},
                    recorded_at = now()
                WHERE (transcripts.text, transcripts.segments)
                      IS DISTINCT FROM (EXCLUDED.text, EXCLUDED.segments)""")

    def _load_jobs(self, cur: Any, load: DayLoad) -> None:
        rows = [(j.job_id, j.array_index, load.day, j.step, j.state, j.exit_code or None,
                 j.elapsed_s, j.node or None, j.gpus, j.gpus * j.elapsed_s, j.submitted_at,
                 j.started_at) for j in load.jobs]
        self._copy(cur, "tmp_slurm_jobs", f"SELECT {', '.join(_JOB_COLS)} FROM slurm_jobs",
                   _JOB_COLS, rows)
        cur.execute(
            f"""INSERT INTO slurm_jobs ({', '.join(_JOB_COLS)})
                SELECT {', '.join(_JOB_COLS)} FROM tmp_slurm_jobs
                ON CONFLICT (job_id, array_index) DO UPDATE
                    SET {_set_clause(_JOB_COLS, ('job_id', 'array_index'))}, recorded_at = now()
                WHERE (slurm_jobs.state, slurm_jobs.elapsed_s, slurm_jobs.exit_code,
                       slurm_jobs.submitted_at, slurm_jobs.started_at)
                      IS DISTINCT FROM (EXCLUDED.state, EXCLUDED.elapsed_s, EXCLUDED.exit_code,
                                        EXCLUDED.submitted_at, EXCLUDED.started_at)""")

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
                WHERE d.day = %(day)s""", {"day": day})
