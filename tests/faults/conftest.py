"""Fixtures of the fault tests: a small source day, a site config per test (its own remote
dirs and job names), and helpers to build the fault's environment."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import sample_clips
from faults_support import CLIPS, DAY, SOURCE_ROOT, SUBMIT_HOME, site_config
from support import TEST_NS


@pytest.fixture(scope="session")
def source_day() -> list[str]:
    """CLIPS one-sentence clips of DAY at the source, readable by the submit user."""
    expected = sample_clips.make_day(SOURCE_ROOT, DAY, clips=CLIPS, bad=False, sentences_per_clip=1)
    subprocess.run(["chmod", "-R", "a+rX", str(SOURCE_ROOT)], check=True)
    return sorted(expected)


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def fault_config(
    tmp_path: Path, tag: str, ssh_conn_id: str, airflow_db: None, source_day: list[str]
) -> Iterator[Callable[..., Path]]:
    """``fault_config(**overrides)`` -> a site config file for this test; its remote dirs
    are removed afterwards."""
    counter = iter(range(100))

    def make(**overrides: Any) -> Path:
        return site_config(tmp_path / f"site-{next(counter)}.json", tag, **overrides)

    yield make
    shutil.rmtree(SUBMIT_HOME / "audio-pipeline-test" / f"faults-{tag}", ignore_errors=True)


@pytest.fixture
def clip_by_clip_config(fault_config: Callable[..., Path]) -> Callable[..., Path]:
    """``fault_config`` on WhisperX, for the faults that strike "after the first clip":
    WhisperX writes each clip's result line as the clip ends, while the torch engine decodes a
    shard's clips in shared batches (no such moment)."""
    return functools.partial(fault_config, engine="whisperx")


PG_PORT = 55432 + int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[dict[str, Any]]:
    """A PostgreSQL server of these tests alone (initdb + pg_ctl, port 55432, +1 per xdist
    worker), so a test may restart it without touching the shared server. Its role's
    password is distinctive, so the secrets test can grep for it."""
    import glob

    bindir = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1])
    data = Path(f"/tmp/faults-pg{TEST_NS}")
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir()
    shutil.chown(data, "postgres", "postgres")
    password = f"pw-{uuid.uuid4().hex}"

    def pg(*argv: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *argv], check=True, capture_output=True, text=True
        )

    pg(str(bindir / "initdb"), "-D", str(data / "db"), "-A", "trust", "-U", "postgres")
    ctl = [
        str(bindir / "pg_ctl"),
        "-D",
        str(data / "db"),
        "-l",
        str(data / "server.log"),
        "-w",
        "-o",
        f"-p {PG_PORT} -k {data} -c listen_addresses=127.0.0.1",
    ]
    pg(*ctl, "start")
    psql = [str(bindir / "psql"), "-h", str(data), "-p", str(PG_PORT), "-qAt", "-d", "postgres"]
    pg(*psql, "-c", f"CREATE ROLE faults LOGIN PASSWORD '{password}'")
    pg(*psql, "-c", "CREATE DATABASE results OWNER faults")
    try:
        yield {
            "dsn": f"postgresql://faults:{password}@127.0.0.1:{PG_PORT}/results",
            "password": password,
            "ctl": ctl,
        }
    finally:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *ctl, "stop", "-m", "immediate"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def private_results_db(private_postgres: dict[str, str]) -> Iterator[str]:
    """The private server's results DB, emptied, registered as ``audio_results_db``."""
    dsn = private_postgres["dsn"]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    os.environ["AIRFLOW_CONN_AUDIO_RESULTS_DB"] = json.dumps(
        {
            "conn_type": "postgres",
            "host": "127.0.0.1",
            "port": PG_PORT,
            "login": "faults",
            "password": private_postgres["password"],
            "schema": "results",
        }
    )
    yield dsn
