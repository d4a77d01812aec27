"""Helpers every test folder shares (fixtures live in the conftest files): the repository's
paths, the test namespace, PostgreSQL as its superuser, the test bed over SSH, polling, site
configs, a real SMTP server and a local Airflow (scripts/airflow_stack.sh).

Importable by name (``import support``): pytest.ini puts ``tests/`` on the path.
"""

from __future__ import annotations

import contextlib
import email
import email.message
import email.policy
import importlib.util
import json
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from aiosmtpd.controller import Controller

from hpc_pipeline.slurm.jobs import JobState

REPO = Path(__file__).resolve().parents[1]
# AUDIO_TEST_NS suffixes the shared names (metadata DBs, source dirs) so that two checkouts can
# run their suites side by side on one test bed; CI leaves it empty.
TEST_NS = os.environ.get("AUDIO_TEST_NS", "")
PG_DSN = "postgresql://audio:audio@127.0.0.1:5432"
HPC_PYTHON = "/opt/hpc-venv/bin/python"
MODELS_DIR = "/opt/hpc-models"
MODEL = "faster-whisper-tiny.en"
AIRFLOW_STACK = REPO / "scripts" / "airflow_stack.sh"


def psql(sql: str, db: str = "postgres") -> str:
    """Run ``sql`` as PostgreSQL's superuser (local socket); return its unaligned output.
    Only for test-made names and literals: nothing untrusted reaches it."""
    return subprocess.run(
        ["runuser", "-u", "postgres", "--", "psql", "-qAt", "-d", db, "-c", sql],
        check=True,
        text=True,
        capture_output=True,
    ).stdout


def create_db(name: str, fresh: bool = False) -> None:
    """A database owned by the tests' role ``audio``; ``fresh`` drops an earlier one first."""
    if fresh:
        drop_db(name)
    if not psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'").strip():
        psql(f"CREATE DATABASE {name} OWNER audio")


def drop_db(name: str) -> None:
    psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def one(conn: Any, sql: str) -> tuple[Any, ...]:
    """The one row ``sql`` returns on psycopg connection ``conn`` (a test's own query)."""
    row = conn.execute(sql).fetchone()
    assert row is not None, f"no row from {sql}"
    return tuple(row)


def parquet_query(sql: str) -> list[tuple[Any, ...]]:
    """DuckDB's rows for ``sql`` over Parquet files, read as a researcher would."""
    import duckdb  # only the export tests need it

    relation = duckdb.sql(sql)
    assert relation is not None, sql
    return relation.fetchall()


def job_row(jid: str, idx: int | None, state: str, name: str = "n") -> JobState:
    """A ``JobState`` as SLURM would report job ``jid`` (index ``idx``) in ``state``."""
    return JobState(
        job_id=f"{jid}_{idx}" if idx is not None else jid,
        array_job_id=jid,
        array_index=idx,
        name=name,
        state=state,
        exit_code="0:0",
        node="vm",
        elapsed_s=1,
        alloc_tres="",
        gpus=0,
    )


def use_results_db(name: str) -> None:
    """Point the ``audio_results_db`` connection at database ``name`` (the tests' role)."""
    os.environ["AIRFLOW_CONN_AUDIO_RESULTS_DB"] = json.dumps(
        {
            "conn_type": "postgres",
            "host": "127.0.0.1",
            "port": 5432,
            "login": "audio",
            "password": "audio",
            "schema": name,
        }
    )


def run_as_submit_user(devcluster: dict[str, str], command: str) -> subprocess.CompletedProcess:
    """Run a shell command on the test bed as the submit user, the way Airflow does (SSH)."""
    return subprocess.run(
        [
            "ssh",
            "-i",
            devcluster["DEVCLUSTER_KEY"],
            "-p",
            devcluster["DEVCLUSTER_SSH_PORT"],
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={devcluster['DEVCLUSTER_KNOWN_HOSTS']}",
            f"{devcluster['DEVCLUSTER_USER']}@{devcluster['DEVCLUSTER_SSH_HOST']}",
            command,
        ],
        text=True,
        capture_output=True,
        timeout=120,
    )


def wait_until(
    predicate: Callable[[], Any], timeout_s: float, what: str = "", every_s: float = 0.5
) -> Any:
    """Poll ``predicate`` every ``every_s`` until it returns something truthy, and return
    that; ``what`` names it in the timeout's error. RuntimeError (e.g. an XCom not there yet)
    and OSError (an API call timed out on a loaded machine, or a component restarting) count
    as "not yet"."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if value := predicate():
                return value
        except (RuntimeError, OSError):
            pass
        time.sleep(every_s)
    raise AssertionError(f"{what + ': ' if what else ''}not within {timeout_s} s")


def import_dag(name: str) -> ModuleType:
    """dags/audio_pipeline_daily.py imported as module ``name``, the DAG processor's way: it
    reads the site config named by AUDIO_PIPELINE_CONFIG at import."""
    spec = importlib.util.spec_from_file_location(name, REPO / "dags" / "audio_pipeline_daily.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Nested keys merge (as the site config file does over the defaults)."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def write_config(path: Path, tag: str, source_root: Path, **overrides: Any) -> Path:
    """A site config: config/local.json, the test's ``source_root``, cluster dirs isolated
    under ``audio-pipeline-test/<tag>``, no Airflow retries, the torch engine with one CPU and
    2G per audio shard, then ``overrides`` (nested keys merge).

    The torch engine (the GPU engine, here on the CPU in float32, greedy) rather than
    local.json's WhisperX: a test day is about orchestration, and a WhisperX shard spends ~10
    CPU-s importing before its first clip (6 clips: 37 CPU-s against torch's 21). The tests
    that judge transcripts through whole days (the daily DAG's WER, the engine tier, the
    cluster and compose days) ask for WhisperX. One CPU, not local.json's two: the bed is one
    2-CPU node shared by three test workers; with two CPUs each, the workers' shards queued
    behind one another (and behind a test's job idling to its time limit) while a core stood
    idle."""
    config = json.loads((REPO / "config" / "local.json").read_text())
    config.update(
        source_root=str(source_root),
        remote_root=f"audio-pipeline-test/{tag}",
        staging_root=f"audio-pipeline-test/{tag}/staging",
        retries=0,
        engine="torch",
    )
    one_cpu = {"resources": {"audio": {"cpus_per_task": 1, "mem": "2G"}}}
    path.write_text(json.dumps(merge(merge(config, one_cpu), overrides)))
    return path


class Inbox:
    """aiosmtpd handler keeping every message a real SMTP session hands it."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        msg["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        self.messages.append(msg)
        return "250 Message accepted"

    def find(self, needle: str) -> list[tuple[str, str]]:
        """(subject, text body) of the messages whose subject holds ``needle``."""
        found = []
        for msg in self.messages:
            if needle in msg["Subject"]:
                body = msg.get_body(preferencelist=("html", "plain"))
                found.append((str(msg["Subject"]), body.get_content() if body else ""))
        return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    """A real SMTP server (aiosmtpd) on a free loopback port: (its inbox, the port)."""
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield inbox, controller.port
    finally:
        controller.stop()


def smtp_conn(port: int) -> str:
    """An Airflow SMTP connection (``AIRFLOW_CONN_*`` JSON) to the plain SMTP server on ``port``."""
    return json.dumps(
        {
            "conn_type": "smtp",
            "host": "127.0.0.1",
            "port": port,
            "extra": {"disable_tls": True, "disable_ssl": True, "timeout": 10},
        }
    )


def stack_port(offset: int) -> int:
    """Ports of the Airflow instances tests start: AUDIO_TEST_STACK_PORT + ``offset`` (0: the
    session's shared stack, 1: backfill/catchup, 2: the airflow-killed fault)."""
    return int(os.environ.get("AUDIO_TEST_STACK_PORT", "8081")) + offset


@dataclass
class AirflowStack:
    """One Airflow instance of scripts/airflow_stack.sh (home, port, metadata DB, results DB,
    site config). The test process's own ``AIRFLOW__*`` / ``AIRFLOW_CONN_*`` settings never
    leak into it; ``env`` adds the instance's own (e.g. an SMTP connection)."""

    home: Path
    port: int
    metadata_db: str
    results_db: str
    config: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def results_dsn(self) -> str:
        return f"{PG_DSN}/{self.results_db}"

    def _env(self) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))
        }
        env.update(
            AIRFLOW_HOME=str(self.home),
            AIRFLOW_PORT=str(self.port),
            AIRFLOW_DB=self.metadata_db,
            RESULTS_DB=self.results_db,
            AUDIO_PIPELINE_CONFIG=str(self.config),
            # The DAG file does not change while a test runs: parsed once, not every 30 s
            # (a parse is a forked import, ~1 CPU-s; the 2-core box runs several stacks).
            AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL="3600",
            # A loaded 2-core box can take tens of seconds to answer a task's start or its
            # state report; a client that gives up sooner retries into "already running", or
            # fails a task that succeeded ("Failed to report terminal task state": seen on the
            # airflow-killed fault's own stack with four workers).
            AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT="120",
            **self.env,
        )
        return env

    def start(self) -> None:
        """Start (or complete: idempotent) the instance; returns once the API answers."""
        subprocess.run(["bash", str(AIRFLOW_STACK), "start"], env=self._env(), check=True)

    def stop(self) -> None:
        subprocess.run(["bash", str(AIRFLOW_STACK), "stop"], env=self._env(), check=False)

    def password(self, user: str) -> str:
        """A user's password (the auth manager writes them into the instance's home)."""
        return str(json.loads((self.home / "passwords.json").read_text())[user])


@contextlib.contextmanager
def running(stack: AirflowStack, keep_metadata: bool = False) -> Iterator[AirflowStack]:
    """``stack`` started on a fresh results DB and (unless ``keep_metadata``: saves a
    migration where earlier sessions' runs do not matter) a fresh metadata DB; then stopped
    and the fresh databases dropped."""
    if not keep_metadata:
        create_db(stack.metadata_db, fresh=True)
    create_db(stack.results_db, fresh=True)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()
        drop_db(stack.results_db)
        if not keep_metadata:
            drop_db(stack.metadata_db)
