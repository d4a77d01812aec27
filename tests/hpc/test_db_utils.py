"""audio_hpc.db test-connection, in the HPC runtime (psycopg 3) against the local PostgreSQL."""

from __future__ import annotations

import subprocess

from support import HPC_PYTHON, PG_DSN


def _run(dsn: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            HPC_PYTHON,
            "-m",
            "audio_hpc.db",
            "--db-string",
            dsn,
            "--timeout",
            "3",
            "test-connection",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_connects_and_prints_version(postgres: str) -> None:
    proc = _run(f"{postgres}/postgres")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("connected: PostgreSQL ")


def test_unreachable_server_is_a_clear_failure() -> None:
    proc = _run(PG_DSN.replace("5432", "1") + "/postgres")
    assert proc.returncode == 1
    assert proc.stderr.startswith("cannot connect to the database:")
