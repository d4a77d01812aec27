"""Fault: PostgreSQL restarts while ``record_results`` loads the day.

The load is one transaction; the test holds it at the point where the day's row is written
and the clips are about to be copied (a lock on ``audio_clips``), then restarts the server
(a private one: the shared server is never touched). The task fails on the lost connection,
its automatic retry loads the day again, and every clip, transcript and job is recorded
exactly once."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import psycopg

from faults_support import (
    DAY,
    Background,
    assert_recorded_once,
    live_jobs,
    load_dag,
    query,
    run_day,
)

WAITING = "SELECT query FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND usename = 'faults'"


def test_postgres_restart_during_record_results(
    fault_config: Callable[..., Path],
    private_postgres: dict,
    private_results_db: str,
    source_day: list[str],
    tag: str,
) -> None:
    dsn = private_results_db
    holder: list[psycopg.Connection] = []

    def lock_clips(_: object) -> None:
        """Once the shards run (write_request has read the done-list), hold audio_clips."""
        conn = psycopg.connect(dsn)
        conn.execute("LOCK TABLE audio_clips IN ACCESS EXCLUSIVE MODE")
        holder.append(conn)  # the transaction stays open until the restart ends it

    def waiting_load() -> str | None:
        rows = query(dsn, WAITING)
        return rows[0][0] if rows else None

    def restart(blocked_query: str) -> str:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *private_postgres["ctl"], "restart", "-m", "fast"],
            check=True,
            capture_output=True,
        )
        return blocked_query

    locked = Background(lambda: live_jobs(f"f{tag}-audio-"), lock_clips)
    restarted = Background(lambda: holder and waiting_load(), restart, timeout_s=900)
    run = run_day(load_dag(fault_config(retries=1, retry_delay_s=1, max_retry_delay_s=2)))
    locked.result()
    blocked = restarted.result()

    assert "tmp_results" in blocked, blocked  # the restart hit the day's load (its temp table)
    assert run.state == "success", run.tasks
    assert run.tries["record_results"] == 2, run.tries  # failed once, the retry recorded
    assert_recorded_once(dsn, source_day)
    assert query(dsn, "SELECT count(*) FROM audio_days") == [(1,)]
    jobs = query(
        dsn, "SELECT job_id, array_index, count(*) FROM slurm_jobs GROUP BY job_id, array_index"
    )
    assert {step for (step,) in query(dsn, "SELECT DISTINCT step FROM slurm_jobs")} == {
        "master",
        "transfer",
        "audio",
    }
    assert all(n == 1 for _, _, n in jobs), jobs
    assert query(dsn, "SELECT count(*) FROM audio_clips WHERE day = %s", DAY) == [
        (len(source_day),)
    ]
