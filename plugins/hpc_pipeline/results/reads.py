"""The monitoring app's reads (status page, its API, metrics): read-only snapshots on the
kept connections of ``ResultsConnection.reading``."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hpc_pipeline.results.connection import ResultsConnection

# The per-day numbers every monitoring read returns (alias ``d`` = audio_days).
#: The clip counts of an ``audio_days`` row (also the transcripts Asset event's extra).
DAY_COUNTS = ("clips_listed", "clips_planned", "clips_skipped", "clips_ok", "clips_failed",
              "clips_missing")  # fmt: skip
_DAY_COLS = ", ".join(
    f"d.{c}"
    for c in (*DAY_COUNTS, "failed_by_reason", "audio_seconds", "gpu_seconds", "real_time_factor")
)


# The newest complete day, not after %(until)s when given: health, /metrics and the "no
# complete day for N days" alert all read it here.
_LAST_COMPLETE_DAY = (
    "SELECT max(day) AS day FROM audio_days WHERE status = 'complete' "
    "AND (%(until)s::date IS NULL OR day <= %(until)s::date)"
)


class MonitoringReads(ResultsConnection):
    """Days, a day's jobs and clips, transcripts, health and metrics."""

    def days_between(self, start: dt.date, end: dt.date) -> list[dict[str, Any]]:
        """Every calendar day of [start, end], oldest first; ``status`` is ``not_run`` (and
        the counts None) for a day never recorded. ``queue_wait_s`` maps each step to the
        longest queue wait (sacct Submit -> Start) of its jobs / array indices that day."""
        return self.rows(
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
                 ORDER BY g.day""",
            {"start": start, "end": end},
        )

    def day_detail(self, day: dt.date) -> dict[str, Any] | None:
        """One recorded day in full, with every SLURM job (array index) of its steps and
        ``clips_by_node``: ``{node, clips, failed}`` per node the day's clips came from."""
        with self.reading() as cur:
            cur.execute(
                f"""SELECT d.day, d.status, {_DAY_COLS}, d.plan_id, d.dag_run_id,
                                   d.wall_seconds, d.recorded_at
                              FROM audio_days d WHERE d.day = %(day)s""",
                {"day": day},
            )
            row = cur.fetchone()
            if row is None:
                return None
            cur.execute(
                """SELECT step, job_id, array_index, state, exit_code, node, gpus,
                                  gpu_seconds, elapsed_s, submitted_at, started_at, queue_wait_s
                             FROM slurm_jobs WHERE day = %(day)s
                            ORDER BY array_position(ARRAY['master', 'transfer', 'audio'], step),
                                     step, length(job_id), job_id, array_index""",
                {"day": day},
            )
            row["jobs"] = cur.fetchall()
            cur.execute(
                """SELECT node, count(*) AS clips,
                          count(*) FILTER (WHERE status = 'failed') AS failed
                     FROM audio_clips WHERE day = %(day)s AND node IS NOT NULL
                    GROUP BY node ORDER BY node""",
                {"day": day},
            )
            row["clips_by_node"] = cur.fetchall()
            return row

    def day_clips(
        self,
        day: dt.date,
        *,
        status: str | None,
        error_kind: str | None,
        after: str | None,
        limit: int,
    ) -> tuple[int, list[dict[str, Any]]]:
        """(how many clips match, the page of them after clip id ``after``, in clip order).

        The page's rows are found by their clip-id range (clip ids start with the day): the
        primary key then yields them in order and the scan stops after the page. Filtering
        by ``day`` instead made the planner walk the primary key from the first clip of the
        year (1.5 s p95 for a mid-year day at 20,000 clips a day, bench/RESULTS.md), or, with
        both, sort the whole day; a status filter goes through (day, status, clip_id)."""
        params = {
            "day": day,
            "status": status,
            "kind": error_kind,
            "after": after,
            "limit": limit,
            "lo": day.isoformat(),
            "hi": (day + dt.timedelta(days=1)).isoformat(),
        }
        where = """day = %(day)s AND (%(status)s::text IS NULL OR status = %(status)s)
                   AND (%(kind)s::text IS NULL OR error_kind = %(kind)s)"""
        with self.reading() as cur:
            cur.execute(f"SELECT count(*) AS n FROM audio_clips WHERE {where}", params)
            total = cur.fetchone()["n"]
            by_day = "day = %(day)s AND " if status else ""
            cur.execute(
                f"""SELECT clip_id, status, error_kind, error, duration_s, language,
                                   engine, model, job_id, array_index, node, finished_at
                              FROM audio_clips
                             WHERE {by_day} clip_id >= %(lo)s AND clip_id < %(hi)s
                               AND (%(status)s::text IS NULL OR status = %(status)s)
                               AND (%(kind)s::text IS NULL OR error_kind = %(kind)s)
                               AND (%(after)s::text IS NULL OR clip_id > %(after)s)
                             ORDER BY clip_id LIMIT %(limit)s""",
                params,
            )
            return total, cur.fetchall()

    def transcript(self, clip_id: str) -> dict[str, Any] | None:
        rows = self.rows(
            """SELECT t.clip_id, c.day, t.text, t.language, t.model, t.segments,
                                    t.word_count, c.duration_s, t.recorded_at
                               FROM transcripts t JOIN audio_clips c USING (clip_id)
                              WHERE t.clip_id = %(clip_id)s""",
            {"clip_id": clip_id},
        )
        return rows[0] if rows else None

    def health(self, since: dt.date, until: dt.date) -> dict[str, Any]:
        """Last complete day, and the days of [since, until] never recorded / not complete."""
        with self.reading() as cur:
            out: dict[str, Any] = {"last_complete_day": self._last_complete(cur, None)}
            cur.execute("SELECT max(day) AS day FROM audio_days")
            out["last_recorded_day"] = cur.fetchone()["day"]
            cur.execute(
                """SELECT g.day::date AS day, d.status
                             FROM generate_series(%(since)s::date, %(until)s::date,
                                                  interval '1 day') g(day)
                             LEFT JOIN audio_days d ON d.day = g.day
                            WHERE d.status IS DISTINCT FROM 'complete' ORDER BY g.day""",
                {"since": since, "until": until},
            )
            rows = cur.fetchall()
        out["days_missing"] = [r["day"] for r in rows if r["status"] is None]
        out["days_not_complete"] = [r["day"] for r in rows if r["status"] is not None]
        return out

    def metrics_snapshot(self) -> dict[str, Any]:
        """What /metrics exports: days per status, the latest recorded day, the last complete."""
        with self.reading() as cur:
            cur.execute("SELECT status, count(*) AS n FROM audio_days GROUP BY status")
            by_status = {r["status"]: r["n"] for r in cur.fetchall()}
            cur.execute(
                f"SELECT d.day, d.status, {_DAY_COLS} FROM audio_days d ORDER BY d.day DESC LIMIT 1"
            )
            last = cur.fetchone()
            return {
                "days_by_status": by_status,
                "last_day": last,
                "last_complete_day": self._last_complete(cur, None),
            }

    def last_complete_day(self, on_or_before: str) -> str | None:
        """The newest ``complete`` day not after ``on_or_before`` (None: none ever was)."""
        with self.reading() as cur:
            day = self._last_complete(cur, on_or_before)
        return day.isoformat() if day else None

    @staticmethod
    def _last_complete(cur: Any, until: dt.date | str | None) -> dt.date | None:
        cur.execute(_LAST_COMPLETE_DAY, {"until": until})
        return cur.fetchone()["day"]
