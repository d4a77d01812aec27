"""Versioned SQL migrations (``sql/migrations/NNNN_*.sql``), applied once each, in order,
under an advisory lock (one migrator at a time)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from hpc_pipeline.results.connection import ResultsConnection

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "sql" / "migrations"
_LOCK_KEY = 0x617564696F  # advisory lock id ("audio"): one migrator at a time


class ResultsSchema(ResultsConnection):
    """The schema's migrations."""

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
                                    "add a new migration instead"
                                )
                            continue
                        cur.execute(sql)
                        cur.execute(
                            "INSERT INTO schema_migrations (version, checksum) VALUES (%s, %s)",
                            (version, checksum),
                        )
                        conn.commit()
                        applied_now.append(version)
                finally:
                    conn.rollback()
                    cur.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
                    conn.commit()
        return applied_now
