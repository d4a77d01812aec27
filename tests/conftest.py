"""Shared fixtures: the real local test bed (SLURM + sshd via the project's provisioning
script, PostgreSQL) and an Airflow environment pointed at it, and the test tiers.

Airflow reads its configuration at import, so the environment is set here, before any test
module imports Airflow. Everything runs as root in CI; jobs run as the non-root submit user.

Tiers are marks applied from the fixtures a test uses (``pytest_collection_modifyitems``):
``bed`` (SLURM + sshd), ``postgres``, ``stack`` (a running Airflow), ``engine`` (the HPC
runtime's torch / WhisperX and the model); ``network`` reaches a package index; a test with
none of them is ``unit`` and starts nothing. ``alone`` (by hand) takes the bed from everyone
else (a node killed, sshd or slurmdbd stopped): `make test` runs those after the rest, one at
a time.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# Each pytest-xdist worker (`make test`: three) is a namespace of its own: metadata DBs, results
# DBs, source dirs, Airflow homes (AUDIO_TEST_NS) and a block of ports (AUDIO_TEST_STACK_PORT),
# so the workers share only the bed and the PostgreSQL server. Set before `support` reads them.
if _worker := os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["AUDIO_TEST_NS"] = f"{os.environ.get('AUDIO_TEST_NS', '')}_{_worker}"
    _stack_port = int(os.environ.get("AUDIO_TEST_STACK_PORT", "8081"))
    os.environ["AUDIO_TEST_STACK_PORT"] = str(_stack_port + 10 * int(_worker.removeprefix("gw")))
    # The controlling process ran this file first and set the Airflow defaults below for
    # itself; a worker inherits them, so it drops them to take its own namespace's.
    for _key in ("AIRFLOW_HOME", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"):
        os.environ.pop(_key, None)

from support import (
    HPC_PYTHON,
    MODEL,
    MODELS_DIR,
    PG_DSN,
    REPO,
    TEST_NS,
    create_db,
    drop_db,
    use_results_db,
)

PROVISION = REPO / "hpc" / "devcluster" / "provision.sh"
AIRFLOW_HOME = REPO / ".airflow" / f"test{TEST_NS}"
AIRFLOW_TEST_DB = f"airflow_test{TEST_NS}"

os.environ.setdefault("AIRFLOW_HOME", str(AIRFLOW_HOME))
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(REPO / "dags"))
os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(REPO / "plugins"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")
os.environ.setdefault(
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    f"postgresql+psycopg2://audio:audio@127.0.0.1:5432/{AIRFLOW_TEST_DB}",
)
os.environ.setdefault("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest-xdist runs about a worker per core: one torch / OpenMP thread per worker
    # (inherited by the engines' subprocesses), so workers never fight over the same cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

# tier mark -> the fixtures that put a test in it (their closure: indirect use counts)
TIER_FIXTURES = {
    # slurm_world: a real-SLURM module's world (tests/slurm_worlds.py), the bed or the cluster
    "bed": {"devcluster", "slurm_world"},
    "postgres": {"postgres"},
    "stack": {"airflow_stack", "stack"},  # the shared Airflow, or a module's own `stack`
    "engine": {"engine_runtime"},
    "network": {"package_index"},
}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test with its tiers from the fixtures it uses, so none can be forgotten
    (``alone`` is the one mark set by hand: what it breaks for others cannot be inferred).

    For pytest-xdist's ``loadgroup``: a module is one group, so its module fixtures (a day run,
    a stack, a wheel) are set up once, and the tests of the session's shared Airflow are one
    group, so one worker starts it. The longest groups go first (``_expected_length``), so
    that no long group starts last while the other workers idle; a stable sort keeps each
    module's own order."""
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        tiers = {tier for tier, fixtures in TIER_FIXTURES.items() if used & fixtures}
        if not tiers and not item.get_closest_marker("alone"):
            tiers.add("unit")
        for tier in sorted(tiers):
            item.add_marker(tier)
        if not item.get_closest_marker("xdist_group"):  # a test may name its own group
            group = "airflow_stack" if "airflow_stack" in used else item.nodeid.partition("::")[0]
            item.add_marker(pytest.mark.xdist_group(group))
    items.sort(key=_expected_length)


# Wall seconds of the longest groups in `make test` on the 2-core dev machine (timeline of
# 2026-12-08; a group is a module, or the name an ``xdist_group`` mark gives). Handed out
# longest first: those that mostly wait on SLURM (a job run into its time limit, a full
# staging filesystem) start while others need the CPU, not at the end when nothing else is
# left to overlap their waits. Re-measure when a group changes a lot; unlisted groups follow.
GROUP_SECONDS = {
    "airflow_stack": 556,  # the shared Airflow: REST/UI triggers, live monitoring, status page
    "tests/dag/test_backfill_catchup.py": 391,
    "tests/dag/test_daily_dag.py": 233,
    "tests/dag/test_distribution.py": 176,
    "airflow-floor": 168,
    "tests/faults/test_memory_and_time_limits.py": 164,
    "tests/faults/test_staging_full.py": 161,
    "tests/faults/test_airflow_killed.py": 153,
    "tests/faults/test_globus_day.py": 133,
    "tests/hpc/test_day_on_slurm.py": 114,
    "tests/plugin/test_slurm_real.py": 99,
    "tests/faults/test_concurrent_runs.py": 89,
    "tests/faults/test_postgres_restart.py": 76,
}


def _expected_length(item: pytest.Item) -> tuple[int, int]:
    """The order groups are handed out in: the measured ones longest first, then the rest by
    kind (a stack, then the bed or the engines, then PostgreSQL, then unit tests)."""
    group = item.get_closest_marker("xdist_group")
    seconds = GROUP_SECONDS.get(str(group.args[0])) if group and group.args else None
    if seconds is not None:
        return 0, -seconds
    for rank, marks in enumerate([{"stack"}, {"bed", "engine"}, {"postgres"}], start=1):
        if any(item.get_closest_marker(mark) for mark in marks):
            return rank, 0
    return 4, 0


def _sh(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, text=True, capture_output=True)
    assert proc.returncode == 0, f"{args} exited {proc.returncode}: {proc.stderr[-2000:]}"
    return proc


@contextlib.contextmanager
def _one_process_at_a_time(name: str) -> Iterator[None]:
    """Held by one process of the machine at a time (an flock), e.g. one xdist worker."""
    with open(Path(tempfile.gettempdir()) / f"audio-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="session")
def devcluster() -> dict[str, str]:
    """Bring the single-node SLURM cluster + sshd up (or reuse it); return its facts.

    The xdist workers share the bed: one at a time (provisioning edits users and files), and
    only the first of a run configures it (rewriting the submit user's keys under the other
    worker's logins could refuse one); the next ones only make sure it is started."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID", uuid.uuid4().hex)
    configured = Path(tempfile.gettempdir()) / f"audio-devcluster-configured-{run}"
    with _one_process_at_a_time("devcluster"):
        steps = ["start"] if configured.exists() else ["configure", "start"]
        _sh("bash", str(PROVISION), *steps)
        configured.touch()
    out = _sh("bash", str(PROVISION), "env").stdout
    return {
        k: v.strip('"') for k, v in (line.split("=", 1) for line in out.splitlines() if "=" in line)
    }


@pytest.fixture(scope="session")
def ssh_conn_id(devcluster: dict[str, str]) -> str:
    """An Airflow SSH connection to the test bed, host key pinned (never ignored)."""
    conn = {
        "conn_type": "ssh",
        "host": devcluster["DEVCLUSTER_SSH_HOST"],
        "port": int(devcluster["DEVCLUSTER_SSH_PORT"]),
        "login": devcluster["DEVCLUSTER_USER"],
        "extra": {
            "key_file": devcluster["DEVCLUSTER_KEY"],
            "host_key": devcluster["DEVCLUSTER_HOST_KEY"],
            "no_host_key_check": False,
        },
    }
    os.environ["AIRFLOW_CONN_HPC_SSH"] = json.dumps(conn)
    return "hpc_ssh"


@pytest.fixture(scope="session")
def postgres() -> str:
    """The local PostgreSQL server; returns a DSN prefix (append /<dbname>)."""
    with _one_process_at_a_time("postgres"):
        _sh("bash", str(REPO / "scripts" / "postgres.sh"), "start")
    return PG_DSN


@pytest.fixture
def results_db(postgres: str) -> Iterator[str]:
    """A fresh, empty results database for one test; registered as `audio_results_db`."""
    name = f"results_{uuid.uuid4().hex[:10]}"
    create_db(name)
    use_results_db(name)
    yield f"{postgres}/{name}"
    drop_db(name)


@pytest.fixture(scope="session")
def airflow_db(postgres: str) -> None:
    """Airflow's metadata DB (PostgreSQL, so LocalExecutor works), migrated once."""
    create_db(AIRFLOW_TEST_DB)
    AIRFLOW_HOME.mkdir(parents=True, exist_ok=True)
    _sh(sys.executable, "-m", "airflow", "db", "migrate")


@pytest.fixture(scope="session")
def engine_runtime() -> dict[str, str]:
    """The HPC runtime's engines (torch, WhisperX) and the tiny.en model: the engine tier."""
    model = Path(MODELS_DIR) / MODEL
    if not (Path(HPC_PYTHON).exists() and model.is_dir()):
        pytest.fail(f"engine tier: needs {HPC_PYTHON} and {model} (make install)")
    return {"python": HPC_PYTHON, "models_dir": MODELS_DIR, "model": MODEL}


@pytest.fixture(scope="session")
def package_index() -> None:
    """The test reaches a package index (PyPI, or the pip/uv index configured): not unit."""
