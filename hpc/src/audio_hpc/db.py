"""Database utilities run on the cluster (seed CLI): ``--db-string DSN test-connection``.

Kept to what a job needs to check before it relies on the results DB; loading results is the
Airflow side's job.
"""

from __future__ import annotations

import argparse
import sys

import psycopg


def test_connection(dsn: str, timeout_s: int) -> str:
    """The server's version string; raises psycopg.Error when it cannot be reached."""
    with psycopg.connect(dsn, connect_timeout=timeout_s) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "unknown"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--db-string", required=True, help="libpq connection string or URI")
    p.add_argument("--timeout", type=int, default=10, help="connect timeout, seconds")
    p.add_argument("command", choices=("test-connection",))
    args = p.parse_args(argv)
    try:
        version = test_connection(args.db_string, args.timeout)
    except psycopg.Error as exc:
        print(f"cannot connect to the database: {str(exc).strip()}", file=sys.stderr)
        return 1
    print(f"connected: PostgreSQL {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
