"""The installable distribution, the way a site with its own Airflow uses it.

Builds the wheel, installs it into a fresh virtualenv with only the project's pinned Airflow and
providers (no plugins folder, no repository on ``sys.path``), then from that venv: the provider
is listed by ``airflow providers``, a DAGs folder holding only the DAG file parses, and
``airflow dags test`` runs a day on the test bed into PostgreSQL (the cluster code it deploys
is the copy bundled in the wheel).

Every test runs once per Airflow: the project's own (requirements.txt, 3.3) and, with
``AUDIO_TEST_AIRFLOW_FLOOR=1`` (CI), the oldest release ``pyproject.toml`` admits, pinned whole
in ``constraints-airflow-3.1.txt``: a second venv, the same tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import sample_clips
from dag_support import SOURCE_ROOT, write_config
from hpc_pipeline.release import release_id
from support import REPO, create_db, drop_db

DIST = "audio-pipeline-airflow"
DAY = "2024-02-01"  # one clip: this test is about packaging, not transcription
SOURCE = SOURCE_ROOT.with_name(f"{SOURCE_ROOT.name}-dist")  # days of its own
PLUGIN_MODULE = REPO / "plugins" / "hpc_pipeline" / "monitoring" / "plugin.py"
FLOOR_CONSTRAINTS = Path(__file__).with_name("constraints-airflow-3.1.txt")
PROJECT = pytest.param(None, id="airflow-project")  # the resolution installed in .venv
FLOOR = pytest.param(
    FLOOR_CONSTRAINTS,
    id="airflow-floor",
    marks=[
        pytest.mark.skipif(
            os.environ.get("AUDIO_TEST_AIRFLOW_FLOOR") != "1",
            reason="the oldest Airflow's venv: AUDIO_TEST_AIRFLOW_FLOOR=1",
        ),
        pytest.mark.xdist_group("airflow-floor"),  # beside the project's Airflow, not after it
    ],
)


def _uv() -> str:
    """uv (requirements-dev.txt) installs a fresh venv from its cache in seconds, not minutes."""
    found = shutil.which(
        "uv", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    )
    assert found, "uv is missing: pip install -r requirements-dev.txt"
    return found


def _run(
    args: list[str], env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, env=env, text=True, capture_output=True, timeout=timeout)
    assert proc.returncode == 0, f"{args}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checkout's wheel, built once for every Airflow it is installed with."""
    out = tmp_path_factory.mktemp("dist")
    _run([_uv(), "build", "--wheel", "--out-dir", str(out), str(REPO)])
    return next(out.glob("audio_pipeline_airflow-*.whl"))


def _pinned(constraints: str, name: str) -> str:
    """The version ``constraints`` pins for ``name`` (``name==version`` lines)."""
    return next(
        line.split("==", 1)[1].split()[0]
        for line in constraints.splitlines()
        if line.lower().startswith(f"{name}==")
    )


@pytest.fixture(scope="module", params=[PROJECT, FLOOR])
def fresh_venv(
    request: pytest.FixtureRequest, wheel: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A new venv with the built wheel, Airflow and providers at pinned versions: the project's
    own resolution (requirements.txt as installed in .venv) or the oldest Airflow's file."""
    work = tmp_path_factory.mktemp("venv")
    uv = _uv()
    if request.param is None:  # pins only: local checkouts installed into .venv are no constraint
        freeze = _run([uv, "pip", "freeze", "--python", sys.executable]).stdout
        constraints = "".join(line for line in freeze.splitlines(keepends=True) if "==" in line)
    else:
        constraints = request.param.read_text()
    (work / "constraints.txt").write_text(constraints)
    venv = work / "venv"
    _run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)])
    _run(
        [
            uv,
            "pip",
            "install",
            "--quiet",
            "--python",
            str(venv / "bin" / "python"),
            "--constraint",
            str(work / "constraints.txt"),
            str(wheel),
        ]
    )
    probe = "import airflow; print(airflow.__version__)"
    installed = _run([str(venv / "bin" / "python"), "-I", "-c", probe]).stdout.strip()
    assert installed == _pinned(constraints, "apache-airflow"), installed
    return venv


@pytest.fixture(scope="module")
def site(
    fresh_venv: Path, tmp_path_factory: pytest.TempPathFactory, ssh_conn_id: str, postgres: str
) -> Iterator[dict[str, Any]]:
    """A site's Airflow: its own home and SQLite DB, a DAGs folder with only the DAG file, an
    empty plugins folder, the two connections and the site config."""
    home = tmp_path_factory.mktemp("site")
    (home / "dags").mkdir()
    (home / "plugins").mkdir()
    shutil.copy(REPO / "dags" / "audio_pipeline_daily.py", home / "dags")
    sample_clips.make_day(SOURCE, DAY, clips=1, bad=False, sentences_per_clip=2)
    subprocess.run(["chmod", "-R", "a+rX", str(SOURCE)], check=True)
    results_db = f"results_dist_{uuid.uuid4().hex[:8]}"
    create_db(results_db)
    config = write_config(
        home / "site.json", uuid.uuid4().hex[:8], schedule=None, source_root=str(SOURCE)
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "PYTHON", "VIRTUAL_ENV", "AUDIO_"))
    }
    env.update(
        {
            "PATH": f"{fresh_venv / 'bin'}{os.pathsep}{env['PATH']}",
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW_CONN_HPC_SSH": os.environ["AIRFLOW_CONN_HPC_SSH"],
            "AIRFLOW_CONN_AUDIO_RESULTS_DB": json.dumps(
                {
                    "conn_type": "postgres",
                    "host": "127.0.0.1",
                    "port": 5432,
                    "login": "audio",
                    "password": "audio",
                    "schema": results_db,
                }
            ),
            "AUDIO_PIPELINE_CONFIG": str(config),
        }
    )
    _run(["airflow", "db", "migrate"], env)
    yield {"env": env, "results_dsn": f"{postgres}/{results_db}"}
    drop_db(results_db)


def airflow_json(site: dict, *args: str) -> list[dict]:
    """An ``airflow`` CLI table as JSON (warnings such as graphviz's share its stdout)."""
    out = _run(["airflow", *args, "--output", "json"], site["env"]).stdout
    return json.loads(next(line for line in out.splitlines() if line.startswith(("[", "{"))))


def test_the_wheel_carries_the_package_and_the_cluster_release(fresh_venv: Path) -> None:
    probe = (
        "import json, hpc_pipeline, audio_hpc.contract as c\n"
        "from hpc_pipeline.release import release_id\n"
        "print(json.dumps([hpc_pipeline.__file__, c.__file__,"
        " release_id(hpc_pipeline.CLUSTER_CODE_DIR)]))"
    )
    package, contract, release = json.loads(
        _run([str(fresh_venv / "bin" / "python"), "-I", "-c", probe]).stdout
    )
    site_packages = str(fresh_venv / "lib")
    assert package.startswith(site_packages) and contract.startswith(site_packages)
    assert contract.endswith("site-packages/audio_hpc/contract.py")
    checkout = REPO / "hpc" / "src" / "audio_hpc" / "contract.py"
    assert Path(contract).read_bytes() == checkout.read_bytes()
    bundled = Path(package).parent / "cluster" / "src" / "audio_hpc" / "contract.py"
    assert bundled.read_bytes() == checkout.read_bytes(), "the release carries the same contract"
    migrations = list(Path(package).parent.glob("sql/migrations/*.sql"))
    assert migrations, "SQL migrations are package data"
    assert release == release_id(REPO / "hpc"), "the wheel deploys the checkout's release"


def test_airflow_lists_the_provider(site: dict) -> None:
    listed = {p["package_name"]: p for p in airflow_json(site, "providers", "list")}
    assert DIST in listed and listed[DIST]["version"] == "1.0.0"
    assert {"apache-airflow-providers-ssh", "apache-airflow-providers-postgres"} <= set(listed)
    info = airflow_json(site, "providers", "get", DIST, "--full")[0]
    assert info["package-name"] == DIST
    modules = {
        kind: [m for entry in info[kind] for m in entry["python-modules"]]
        for kind in ("hooks", "operators", "sensors", "triggers")
    }
    assert modules["operators"] == ["hpc_pipeline.operators.slurm"]
    assert modules["triggers"] == ["hpc_pipeline.triggers.slurm"]
    assert "hpc_pipeline.hooks.results_db" in modules["hooks"]
    triggers = airflow_json(site, "providers", "triggers")
    assert any(t["package_name"] == DIST for t in triggers)


def test_the_monitoring_plugin_is_registered_once(site: dict, fresh_venv: Path) -> None:
    """From the entry point, also when the repository's plugins folder is configured too."""
    probe = (
        "from importlib.metadata import entry_points\n"
        "print([e.value for e in entry_points(group='airflow.plugins')])"
    )
    declared = _run([str(fresh_venv / "bin" / "python"), "-I", "-c", probe]).stdout
    assert "hpc_pipeline.monitoring.plugin:AudioPipelinePlugin" in declared
    if not PLUGIN_MODULE.exists():  # the monitoring plugin lands with its own branch
        return
    for plugins_folder in (site["env"]["AIRFLOW__CORE__PLUGINS_FOLDER"], str(REPO / "plugins")):
        env = {**site["env"], "AIRFLOW__CORE__PLUGINS_FOLDER": plugins_folder}
        ours = [
            p["source"]
            for p in airflow_json({"env": env}, "plugins")
            if "hpc_pipeline.monitoring" in p["source"] or "audio_pipeline_plugin" in p["source"]
        ]
        assert len(ours) == 1 and ours[0].startswith(f"{DIST}=="), (plugins_folder, ours)


# A whole day waits its turn on the shared bed: 3.1.8's took 12 minutes on the loaded 2-core
# machine (setup included), close to pytest.ini's 900 s.
@pytest.mark.timeout(1800)
def test_dags_folder_with_only_the_dag_file_parses_and_runs_a_day(site: dict) -> None:
    """``dags test`` parses the DAG from the DAGs folder (no plugins, no repository)."""
    proc = subprocess.run(
        ["airflow", "dags", "test", "audio_pipeline_daily", "--conf", json.dumps({"date": DAY})],
        env=site["env"],
        text=True,
        capture_output=True,
        timeout=900,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-5000:]
    with psycopg.connect(site["results_dsn"]) as conn:
        day = conn.execute(
            "SELECT status, clips_ok, clips_failed FROM audio_days WHERE day = %s", (DAY,)
        ).fetchone()
        texts = conn.execute("SELECT text FROM transcripts").fetchall()
    assert day == ("complete", 1, 0), log[-5000:]
    assert len(texts) == 1 and texts[0][0].strip()


API_PROBE = """
import json
from fastapi.testclient import TestClient
from airflow.api_fastapi.app import create_app

with TestClient(create_app()) as client:
    anonymous = client.get("/audio-pipeline/api/days/{day}").status_code
    token = client.post("/auth/token", json={{"username": "viewer", "password": "viewer"}})
    token.raise_for_status()
    auth = {{"Authorization": "Bearer " + token.json()["access_token"]}}
    day = client.get("/audio-pipeline/api/days/{day}", headers=auth)
    plugins = client.get("/api/v2/plugins", headers=auth).json()["plugins"]
ours = [p for p in plugins if p["name"] == "audio_pipeline"]
print(json.dumps({{"anonymous": anonymous, "status": day.status_code, "day": day.json(),
                  "views": [v["href"] for p in ours for v in p["external_views"]],
                  "apps": [a["url_prefix"] for p in ours for a in p["fastapi_apps"]]}}))
"""


def test_airflows_api_serves_the_monitoring_app_and_its_view(site: dict, fresh_venv: Path) -> None:
    """Airflow's own API app (in process, as the api-server builds it) mounts the plugin's
    FastAPI app and lists its UI view; a viewer's token reads the day the test above ran."""
    home = Path(site["env"]["AIRFLOW_HOME"])
    (home / "passwords.json").write_text(json.dumps({"viewer": "viewer"}))
    env = {
        **site["env"],
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "viewer:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
    }
    out = _run([str(fresh_venv / "bin" / "python"), "-c", API_PROBE.format(day=DAY)], env).stdout
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen["anonymous"] == 401 and seen["status"] == 200, seen
    assert seen["day"]["status"] == "complete", seen
    assert seen["views"] == ["audio-pipeline/"] and seen["apps"] == ["/audio-pipeline"], seen
