"""Shared fixtures: the real local test bed (SLURM + sshd via the project's provisioning
script, PostgreSQL) and an Airflow environment pointed at it.

Airflow reads its configuration at import, so the environment is set here, before any test
module imports Airflow. Everything runs as root in CI; jobs run as the non-root submit user.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROVISION = REPO / "hpc" / "devcluster" / "provision.sh"
AIRFLOW_HOME = REPO / ".airflow" / "test"
PG_DSN = "postgresql://audio:audio@127.0.0.1:5432"
# AUDIO_TEST_NS suffixes the shared names (metadata DBs, source dirs) so that two checkouts can
# run their suites side by side on one test bed; CI leaves it empty.
TEST_NS = os.environ.get("AUDIO_TEST_NS", "")
AIRFLOW_TEST_DB = f"airflow_test{TEST_NS}"

os.environ.setdefault("AIRFLOW_HOME", str(AIRFLOW_HOME))
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(REPO / "dags"))
os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(REPO / "plugins"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")
os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
                      f"postgresql+psycopg2://audio:audio@127.0.0.1:5432/{AIRFLOW_TEST_DB}")
os.environ.setdefault("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")


def _sh(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=True, text=True, capture_output=True, **kw)


def _psql(db: str, sql: str) -> None:
    _sh("runuser", "-u", "postgres", "--", "psql", "-qAt", "-d", db, "-c", sql)


@pytest.fixture(scope="session")
def devcluster() -> dict[str, str]:
    """Bring the single-node SLURM cluster + sshd up (or reuse it); return its facts."""
    _sh("bash", str(PROVISION), "configure", "start")
    out = _sh("bash", str(PROVISION), "env").stdout
    return {k: v.strip('"') for k, v in (line.split("=", 1) for line in out.splitlines() if "=" in line)}


@pytest.fixture(scope="session")
def ssh_conn_id(devcluster: dict[str, str]) -> str:
    """An Airflow SSH connection to the test bed, host key pinned (never ignored)."""
    conn = {
        "conn_type": "ssh",
        "host": devcluster["DEVCLUSTER_SSH_HOST"],
        "port": int(devcluster["DEVCLUSTER_SSH_PORT"]),
        "login": devcluster["DEVCLUSTER_USER"],
        "extra": {"key_file": devcluster["DEVCLUSTER_KEY"],
                  "host_key": devcluster["DEVCLUSTER_HOST_KEY"],
                  "no_host_key_check": False},
    }
    os.environ["AIRFLOW_CONN_HPC_SSH"] = json.dumps(conn)
    return "hpc_ssh"


@pytest.fixture(scope="session")
def postgres() -> str:
    """The local PostgreSQL server; returns a DSN prefix (append /<dbname>)."""
    _sh("bash", str(REPO / "scripts" / "postgres.sh"), "start")
    return PG_DSN


@pytest.fixture
def results_db(postgres: str) -> str:
    """A fresh, empty results database for one test; registered as `audio_results_db`."""
    name = f"results_{uuid.uuid4().hex[:10]}"
    _psql("postgres", f"CREATE DATABASE {name} OWNER audio")
    os.environ["AIRFLOW_CONN_AUDIO_RESULTS_DB"] = json.dumps({
        "conn_type": "postgres", "host": "127.0.0.1", "port": 5432,
        "login": "audio", "password": "audio", "schema": name})
    yield f"{postgres}/{name}"
    _psql("postgres", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def airflow_db(postgres: str) -> None:
    """Airflow's metadata DB (PostgreSQL, so LocalExecutor works), migrated once."""
    exists = _sh("runuser", "-u", "postgres", "--", "psql", "-qAt", "-c",
                 f"SELECT 1 FROM pg_database WHERE datname = '{AIRFLOW_TEST_DB}'").stdout.strip()
    if not exists:
        _psql("postgres", f"CREATE DATABASE {AIRFLOW_TEST_DB} OWNER audio")
    AIRFLOW_HOME.mkdir(parents=True, exist_ok=True)
    _sh(sys.executable, "-m", "airflow", "db", "migrate", env=os.environ.copy())

