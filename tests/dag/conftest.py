"""Fixtures for the whole-DAG tests: a source day of synthesized clips, a site config, the
DAG module loaded with it, and the session's one Airflow stack."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import sample_clips
from dag_support import ALERT_TO, DAY, SOURCE_ROOT, write_config
from support import (
    REPO,
    TEST_NS,
    AirflowStack,
    Inbox,
    import_dag,
    running,
    smtp_conn,
    smtp_server,
    stack_port,
)


@pytest.fixture(scope="session")
def source_day() -> tuple[str, dict[str, str]]:
    """The day at the source (readable by the submit user): (day, {clip name: expected})."""
    expected = sample_clips.make_day(SOURCE_ROOT, DAY, clips=6)
    subprocess.run(["chmod", "-R", "a+rX", str(SOURCE_ROOT)], check=True)
    return DAY, expected


@pytest.fixture(scope="session")
def exports_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the session's DAG (``daily_dag``) writes each day's Parquet file."""
    return tmp_path_factory.mktemp("exports")


@pytest.fixture(scope="session")
def pipeline_config(tmp_path_factory: pytest.TempPathFactory, exports_dir: Path) -> Path:
    """The site config of ``daily_dag``: local.json's WhisperX (the daily test judges the
    stored text's WER), the optional ``export_day`` step on, so the daily test's first day also
    proves the export (one whole day fewer in the suite)."""
    path = write_config(
        tmp_path_factory.mktemp("config") / "site.json",
        uuid.uuid4().hex[:8],
        engine="whisperx",
        export_dir=str(exports_dir),
    )
    os.environ["AUDIO_PIPELINE_CONFIG"] = str(path)
    return path


@pytest.fixture(scope="session")
def daily_dag(pipeline_config: Path, ssh_conn_id: str, airflow_db: None) -> ModuleType:
    """The DAG module, imported the way the DAG processor does, with the test's config."""
    module = import_dag("audio_pipeline_daily")
    return module


@pytest.fixture(scope="session")
def alert_inbox() -> Iterator[tuple[Inbox, int]]:
    """A real SMTP server (aiosmtpd) the shared stack mails its alerts to: (inbox, port)."""
    with smtp_server() as server:
        yield server


@pytest.fixture(scope="session")
def airflow_stack(
    tmp_path_factory: pytest.TempPathFactory,
    devcluster: dict[str, str],
    postgres: str,
    alert_inbox: tuple[Inbox, int],
) -> Iterator[AirflowStack]:
    """The session's one real Airflow (api-server, scheduler, dag-processor, triggerer) for
    every test that can share it; each uses days and DAG runs of its own. Its tests are one
    xdist group, handed out first (tests/conftest.py); the stack stops after the group's last
    test (``pytest_runtest_teardown`` below), not at the end of the session. Manual runs only,
    one retry (a loaded machine may fail a task's state report once), planned at once (no
    late-data wait: a day without a source directory must reach its master job), alerts to
    ``alert_inbox``, a read-only user and one without any role."""
    config = write_config(
        tmp_path_factory.mktemp("stack") / "site.json",
        uuid.uuid4().hex[:8],
        schedule=None,
        retries=1,
        retry_delay_s=2,
        max_retry_delay_s=5,
        readiness={"rule": "none"},
        alerts={
            "to": [ALERT_TO],
            "smtp_conn_id": "alerts_smtp",
            "from_email": "airflow@example.org",
            "max_failed_ratio": 0.1,
            "days_without_complete": 3,
        },
    )
    stack = AirflowStack(
        home=REPO / ".airflow" / f"test-stack{TEST_NS}",
        port=stack_port(0),
        metadata_db=f"airflow_stack_test{TEST_NS}",
        results_db=f"results_stack{TEST_NS}",
        config=config,
        env={
            "AIRFLOW_USERS": "admin:admin,viewer:viewer,outsider:",
            "AIRFLOW_CONN_ALERTS_SMTP": smtp_conn(alert_inbox[1]),
        },
    )
    with running(stack):
        _SHARED_STACK.append(stack)
        yield stack
    _SHARED_STACK.clear()


_SHARED_STACK: list[AirflowStack] = []  # the running ``airflow_stack``, until its last test


@pytest.hookimpl(trylast=True)  # after the test's own fixtures are torn down
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Stop the shared Airflow once no test after this one uses it: idle, its four components
    cost ~7 % of a core (scheduler loop, triggerer, DAG processor), for the rest of a session
    that its group starts. The session's teardown drops its databases as before."""
    if _SHARED_STACK and _uses_stack(item) and not (nextitem and _uses_stack(nextitem)):
        _SHARED_STACK[0].stop()


def _uses_stack(item: pytest.Item) -> bool:
    return "airflow_stack" in getattr(item, "fixturenames", ())
