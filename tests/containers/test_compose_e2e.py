"""docker-compose.yaml started for real: a private Docker engine, the base images (pulled, or
built here as stand-ins under the same tags where no registry serves them; the SLURM nodes'
trixie root is `hpc/cluster/cluster.sh root`'s, as the native cluster's), the project's images
built from its own Dockerfiles, `up`, one whole day triggered through the published REST API
into the compose PostgreSQL with the real engine (WhisperX) on the stack's SLURM 24.11 cluster
(its shards on both compute nodes), the UI in headless Chromium, then `down -v`, leaving
nothing running.

It installs Debian packages, starts a dockerd and builds ~17 GB of images, so it runs only
when asked: `make compose-test` (CI runs it after the cluster phase, on the same engine). The
duration of each phase goes to .artifacts/compose_e2e_timings.json; the containers' logs to
.artifacts/compose_e2e_logs.txt.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from airflow_api import AirflowApi
from sample_clips import BAD_CLIPS
from support import REPO
from wer_score import corpus_wer

pytestmark = [
    pytest.mark.skipif(
        os.environ.get("AUDIO_COMPOSE_E2E") != "1",
        reason="starts a Docker engine and builds images: run it with `make compose-test`",
    ),
    pytest.mark.timeout(3600),  # the module's fixtures build every image inside the first test
]

ENGINE = REPO / "scripts" / "docker_engine.sh"
STANDINS = REPO / "docker" / "standins" / "build.sh"
CLUSTER = REPO / "hpc" / "cluster" / "cluster.sh"
ARTIFACTS = REPO / ".artifacts"
DOCKER = "/usr/bin/docker"  # Debian's client, matching the engine (not a newer one on PATH)
PROJECT = "audio-compose-e2e"
# Distinct from the native stack (8080) and the other tests' stacks (8081-8300).
PORT = int(os.environ.get("AUDIO_COMPOSE_PORT", "18080"))
BASE_URL = f"http://127.0.0.1:{PORT}"
DAG = "audio_pipeline_daily"
# The run takes the slot of today's scheduled run (the same logical date), so unpausing the DAG
# does not start a second run for the same day; like that scheduled run, it processes yesterday.
LOGICAL_DATE = dt.datetime.now(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
DAY = (LOGICAL_DATE - dt.timedelta(days=1)).date().isoformat()
COMPUTE_NODES = {"c1", "c2"}
LONG_RUNNING = {
    "postgres",
    "slurmdbd",
    "slurmctld",
    *COMPUTE_NODES,
    "login",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
}
ONE_SHOT = {"cluster-init", "sample-clips", "airflow-init"}
WER_THRESHOLD = 0.15  # as tests/dag/test_daily_dag.py: tiny.en on espeak-ng speech
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

REPORT: dict[str, Any] = {"phases_s": {}}


def _write_report() -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "compose_e2e_timings.json").write_text(json.dumps(REPORT, indent=1) + "\n")


@contextmanager
def phase(name: str) -> Iterator[None]:
    start = time.monotonic()
    try:
        yield
    finally:
        REPORT["phases_s"][name] = round(time.monotonic() - start, 1)
        _write_report()


def sh(
    *args: str | Path,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    check: bool = True,
    input: str | None = None,
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        input=input,
        cwd=REPO,
    )
    if check and proc.returncode:
        raise AssertionError(
            f"{' '.join(map(str, args))[:300]} exited {proc.returncode}:\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def compose(env: dict[str, str], *args: str, **kw: Any) -> subprocess.CompletedProcess:
    return sh(
        "docker-compose",
        "-p",
        PROJECT,
        "-f",
        REPO / "docker-compose.yaml",
        "--project-directory",
        REPO,
        *args,
        env=env,
        **kw,
    )


def extra_ca_certs() -> str:
    """This machine's extra CA certificates (Debian local CAs): the builds reach the package
    registries through the same TLS inspection as the host, so the images must trust them."""
    return "".join(
        p.read_text() for p in sorted(Path("/usr/local/share/ca-certificates").rglob("*.crt"))
    )


@pytest.fixture(scope="module")
def docker_env() -> Iterator[dict[str, str]]:
    """The private engine (installed and started unless it runs) and the environment every
    docker/docker-compose call gets: only what the compose file's ${VARS} read, nothing else."""
    with phase("install"):
        sh("bash", ENGINE, "install", timeout=900)
    was_running = sh("bash", ENGINE, "status", check=False).returncode == 0
    with phase("engine_start"):
        sh("bash", ENGINE, "start")
    docker_host = sh("bash", ENGINE, "env").stdout.strip().removeprefix("export DOCKER_HOST=")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "DOCKER_HOST": docker_host,
        "DOCKER_BUILDKIT": "0",
        "AIRFLOW_PORT": str(PORT),
        "SAMPLE_DAY": DAY,
        "DEVCLUSTER_WITH_WHISPERX": "1",  # the real engine: the day must produce transcripts
        "EXTRA_CA_CERTS": extra_ca_certs(),
    }
    # The nodes' base: the native cluster's trixie root with the node's packages (in CI the
    # cluster phase built it on this engine; else one debootstrap here), not debian:13-slim
    # and an apt pass in a layer.
    with phase("node_root"):
        env["CLUSTER_NODE_BASE"] = sh("bash", CLUSTER, "root", env=env, timeout=900).stdout.strip()
    REPORT.update(
        day=DAY,
        whisperx=env["DEVCLUSTER_WITH_WHISPERX"],
        node_base=env["CLUSTER_NODE_BASE"],
        engine_was_running=was_running,
        extra_ca_certs=env["EXTRA_CA_CERTS"].count("BEGIN CERTIFICATE"),
    )
    try:
        yield env
    finally:
        if not was_running:  # stop only the engine this test started
            with phase("engine_stop"):
                sh("bash", ENGINE, "stop")
            assert sh("bash", ENGINE, "status", check=False).returncode != 0


@pytest.fixture(scope="module")
def images(docker_env: dict[str, str]) -> dict[str, Any]:
    """Base images, then the project's images exactly as the compose file defines their builds
    (context, Dockerfile, args), with host networking so that apt and pip reach the registries."""
    services = yaml.safe_load(compose(docker_env, "config").stdout)["services"]
    builds: dict[str, dict[str, Any]] = {}
    for svc in services.values():
        if "build" in svc:
            builds.setdefault(svc["image"], svc["build"])
    bases = set().union(*(_base_images(b) for b in builds.values()))
    bases |= {svc["image"] for svc in services.values() if "build" not in svc}
    bases -= set(builds)  # the nodes run the image cluster-init's build makes
    with phase("base_images"):
        out = sh(
            "bash", STANDINS, *sorted(bases), env={**docker_env, "DOCKER": DOCKER}, timeout=1800
        ).stdout
    how = dict(line.rsplit(" ", 1) for line in out.splitlines())
    assert set(how) == bases and set(how.values()) <= {"present", "pulled", "stand-in"}, out
    REPORT["bases"] = how
    with phase("builds"):
        for image, build in builds.items():
            args = [f"--build-arg={k}={v}" for k, v in (build.get("args") or {}).items()]
            if "target" in build:
                args.append(f"--target={build['target']}")
            log = ARTIFACTS / f"compose_build_{image.split(':')[0]}.log"
            with log.open("w") as out_file:
                proc = subprocess.run(
                    [
                        DOCKER,
                        "build",
                        "--force-rm",
                        "--network",
                        "host",
                        "-f",
                        build["dockerfile"],
                        *args,
                        "-t",
                        image,
                        build["context"],
                    ],
                    stdout=out_file,
                    stderr=subprocess.STDOUT,
                    env=docker_env,
                    timeout=2400,
                    cwd=build["context"],
                )
            assert proc.returncode == 0, f"building {image} failed:\n{log.read_text()[-4000:]}"
    REPORT["image_sizes_mb"] = {
        tag: round(
            int(sh(DOCKER, "image", "inspect", "-f", "{{.Size}}", tag, env=docker_env).stdout) / 1e6
        )
        for tag in sorted(bases | set(builds))
    }
    _write_report()
    return {"bases": how, "built": sorted(builds)}


def _base_images(build: dict[str, Any]) -> set[str]:
    """The images a build's Dockerfile starts from: every stage's FROM, its ${ARG}s resolved
    (the build's args, else the Dockerfile's defaults), other stages' names left out."""
    text = Path(build["context"], build["dockerfile"]).read_text()
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S*)", text.split("\nFROM", 1)[0], re.M))
    args.update(build.get("args") or {})
    bases, stages = set(), set()
    for image, _, stage in re.findall(r"^FROM\s+(\S+)(\s+AS\s+(\S+))?", text, re.M | re.I):
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], image)
        if image not in stages:
            bases.add(image)
        stages.add(stage)
    assert bases, f"{build['dockerfile']} names its base images"
    return bases


def _containers(env: dict[str, str]) -> list[dict[str, Any]]:
    ids = sh(
        DOCKER, "ps", "-aq", "--filter", f"label=com.docker.compose.project={PROJECT}", env=env
    ).stdout.split()
    return json.loads(sh(DOCKER, "inspect", *ids, env=env).stdout) if ids else []


def _service(container: dict[str, Any]) -> str:
    return container["Config"]["Labels"]["com.docker.compose.service"]


def _wait_healthy(env: dict[str, str], timeout_s: float) -> None:
    """Every one-shot done, every service with a healthcheck healthy, the others running (the
    SLURM daemons have none of their own: the login node's healthcheck covers the cluster)."""
    services = yaml.safe_load(compose(env, "config").stdout)["services"]
    checked = {n for n in LONG_RUNNING if "healthcheck" in services[n]}
    assert {"login", "postgres"} <= checked
    deadline = time.monotonic() + timeout_s
    while True:
        state = {}
        for c in _containers(env):
            s = c["State"]
            state[_service(c)] = (s["Status"], s.get("Health", {}).get("Status"), s["ExitCode"])
        broken = {
            n: st
            for n, st in state.items()
            if (n in ONE_SHOT and st[0] == "exited" and st[2] != 0)
            or st[1] == "unhealthy"
            or (n in LONG_RUNNING and st[0] in ("exited", "dead"))
        }
        assert not broken, (
            f"{broken}\n{compose(env, 'logs', '--tail', '60', *broken, check=False).stdout}"
        )
        if (
            set(state) >= LONG_RUNNING | ONE_SHOT
            and all(state[n][:2] == ("running", "healthy") for n in checked)
            and all(state[n][:2] == ("running", None) for n in LONG_RUNNING - checked)
            and all(state[n] == ("exited", None, 0) for n in ONE_SHOT)
        ):
            return
        assert time.monotonic() < deadline, f"not healthy within {timeout_s} s: {state}"
        time.sleep(3)


@pytest.fixture(scope="module")
def stack(docker_env: dict[str, str], images: dict[str, Any]) -> Iterator[dict[str, str]]:
    """`up` (no builds: the images above), every service healthy; `down -v` at the end."""
    # A run cut short before (Ctrl-C) may have left volumes: the day must start from nothing.
    compose(docker_env, "down", "-v", "--remove-orphans", timeout=300)
    try:
        with phase("up"):
            compose(docker_env, "up", "-d", "--no-build")
            _wait_healthy(docker_env, timeout_s=600)
        yield docker_env
    finally:
        logs = compose(docker_env, "logs", "--no-color", "--timestamps", check=False, timeout=120)
        (ARTIFACTS / "compose_e2e_logs.txt").write_text(logs.stdout + logs.stderr)
        with phase("down"):
            compose(docker_env, "down", "-v", "--remove-orphans", timeout=300)
        label = f"label=com.docker.compose.project={PROJECT}"
        left = [
            sh(DOCKER, kind, "ls", "-q", "--filter", label, env=docker_env).stdout.split()
            for kind in ("container", "volume", "network")
        ]
        assert left == [[], [], []], f"left behind (containers, volumes, networks): {left}"


def psql(env: dict[str, str], db: str, sql: str) -> str:
    """SQL in the compose PostgreSQL (through the container's socket; `:'day'` is the day)."""
    return compose(
        env,
        "exec",
        "-T",
        "postgres",
        "psql",
        "-U",
        "audio",
        "-d",
        db,
        "-v",
        "ON_ERROR_STOP=1",
        "-v",
        f"day={DAY}",
        "-qAt",
        input=sql,
    ).stdout


def test_services_run_on_the_project_network_with_one_loopback_port(stack: dict[str, str]) -> None:
    containers = {_service(c): c for c in _containers(stack)}
    assert set(containers) == LONG_RUNNING | ONE_SHOT
    for name, c in containers.items():
        assert c["HostConfig"]["NetworkMode"] == f"{PROJECT}_default", name  # never the host's
        published = {
            port: binds for port, binds in (c["HostConfig"]["PortBindings"] or {}).items() if binds
        }
        expected = (
            {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(PORT)}]}
            if name == "airflow-apiserver"
            else {}
        )
        assert published == expected, name
    # The stack's own SLURM 24.11 cluster (nodes c1, c2), not the host's bed or cluster.
    nodes = compose(stack, "exec", "-T", "login", "sinfo", "-h", "-N", "-o", "%N %P").stdout
    assert sorted(nodes.split("\n")[:-1]) == ["c1 cpu*", "c1 gpu", "c2 cpu*", "c2 gpu"]
    version = compose(stack, "exec", "-T", "login", "scontrol", "version").stdout.strip()
    REPORT["slurm"] = version
    _write_report()
    assert re.fullmatch(r"slurm(-wlm)? 24\.11\.\d+", version), version  # Debian's: slurm-wlm
    assert psql(stack, "audio_results", "SHOW server_version").startswith("15.")
    # The project's images trust this machine's extra CAs (EXTRA_CA_CERTS): pip reached PyPI.
    bodies = re.findall(
        r"-----BEGIN CERTIFICATE-----\n(.*?)-----END", stack["EXTRA_CA_CERTS"], re.S
    )
    assert len(bodies) == stack["EXTRA_CA_CERTS"].count("BEGIN CERTIFICATE")
    for service in ("login", "airflow-apiserver"):
        bundle = compose(
            stack, "exec", "-T", service, "cat", "/etc/ssl/certs/ca-certificates.crt"
        ).stdout
        assert all(body in bundle for body in bodies), service
    assert AirflowApi(BASE_URL)._call("GET", "/api/v2/version")["version"] == "3.3.2"


def test_a_day_triggered_through_the_rest_api_lands_in_postgres(stack: dict[str, str]) -> None:
    api = AirflowApi(BASE_URL)
    api.wait_for_dag(DAG, timeout_s=300)
    with phase("day"):
        run_id = api.trigger(
            DAG, {"date": DAY, "reprocess": "none"}, logical_date=LOGICAL_DATE.isoformat()
        )
        api.unpause(DAG)
        state = api.wait(DAG, run_id, timeout_s=1800)
    REPORT["run_id"] = run_id
    tasks = api.task_states(DAG, run_id)
    assert state == "success", tasks
    assert [r["dag_run_id"] for r in api.dag_runs(DAG)] == [run_id]  # no second run for the day

    expected = json.loads(
        compose(
            stack, "exec", "-T", "login", "cat", f"/srv/audio-source/{DAY}.expected.json"
        ).stdout
    )
    good = {n: t for n, t in expected.items() if not t.startswith("error:")}
    assert len(good) == 6 and len(expected) == len(good) + len(BAD_CLIPS)
    result = json.loads(
        psql(
            stack,
            "audio_results",
            """
        SELECT json_build_object(
          'day', (SELECT row_to_json(d) FROM audio_days d WHERE day = :'day'),
          'clips', (SELECT json_object_agg(split_part(clip_id, '/', 2),
                                           json_build_array(status, error_kind, error))
                    FROM audio_clips WHERE day = :'day'),
          'texts', (SELECT json_object_agg(split_part(t.clip_id, '/', 2), t.text)
                    FROM transcripts t JOIN audio_clips c USING (clip_id) WHERE c.day = :'day'),
          'jobs', (SELECT json_agg(json_build_array(job_id, step, state, node, array_index))
                   FROM slurm_jobs WHERE day = :'day'),
          'clip_nodes', (SELECT json_object_agg(split_part(clip_id, '/', 2), node)
                         FROM audio_clips WHERE day = :'day'))""",
        )
    )
    day = result["day"]
    assert (day["status"], day["clips_listed"], day["clips_ok"], day["clips_failed"]) == (
        "partial",
        len(expected),
        len(good),
        len(BAD_CLIPS),
    )
    assert day["failed_by_reason"] == {kind: 1 for kind in BAD_CLIPS.values()}
    assert day["audio_seconds"] > 10 * len(good) and day["gpu_seconds"] > 0
    clips = result["clips"]
    assert set(clips) == set(expected), "every clip at the source is accounted for"
    for name, kind in BAD_CLIPS.items():
        status, error_kind, error = clips[name]
        assert (status, error_kind) == ("failed", kind) and error, name  # with its reason
    assert all(clips[n][:2] == ["ok", None] for n in good)
    measured = corpus_wer((good[n], result["texts"][n]) for n in good)
    REPORT["wer"] = round(measured, 4)
    assert measured < WER_THRESHOLD, f"WER {measured:.3f}: {result['texts']}"
    # The jobs ran on the compose cluster: its own accounting knows them, COMPLETED; the
    # day's two shards (config/compose.json: 8 clips a shard, 2 at once, each more than half a
    # node's memory) ran one on each compute node, and every clip names its node.
    jobs = result["jobs"]
    assert {step for _, step, _, _, _ in jobs} == {"master", "transfer", "audio"}
    assert {state for _, _, state, _, _ in jobs} == {"COMPLETED"}
    assert all(node in COMPUTE_NODES for *_, node, _ in jobs), jobs
    shards = {index: node for _, step, _, node, index in jobs if step == "audio"}
    REPORT["shard_nodes"] = {str(i): n for i, n in sorted(shards.items())}
    REPORT["clip_nodes"] = result["clip_nodes"]
    _write_report()
    assert set(shards.values()) == COMPUTE_NODES, shards
    assert set(result["clip_nodes"].values()) <= COMPUTE_NODES, result["clip_nodes"]
    assert all(result["clip_nodes"][n] for n in good)
    job_ids = sorted({job_id for job_id, *_ in jobs})
    sacct = compose(
        stack,
        "exec",
        "-T",
        "login",
        "sacct",
        "-X",
        "-n",
        "-P",
        "-o",
        "JobID,State",
        "-j",
        ",".join(job_ids),
    ).stdout
    states = dict(line.split("|") for line in sacct.split("\n") if line.strip())
    assert {j.split("_")[0] for j in states} == set(job_ids) and set(states.values()) == {
        "COMPLETED"
    }, sacct


def test_the_ui_shows_the_day_in_chromium(stack: dict[str, str]) -> None:
    from playwright.sync_api import sync_playwright

    run_id = REPORT.get("run_id")
    assert run_id, "needs the day of the test before"
    ARTIFACTS.mkdir(exist_ok=True)
    with phase("ui"), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{BASE_URL}/audio-pipeline/?day={DAY}")  # not logged in: the login page first
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill("admin")
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"**/audio-pipeline/?day={DAY}", timeout=60_000)
        page.wait_for_selector(f"#day-panel[data-day='{DAY}']", timeout=60_000)
        page.wait_for_selector("#day-clips tbody tr", timeout=60_000)
        status = page.locator("#day-status").inner_text()
        rows = page.locator("#day-clips tbody tr").all_inner_texts()
        page.screenshot(path=str(ARTIFACTS / "compose_status_page.png"), full_page=True)
        # The run in Airflow's own UI, served by the compose api-server.
        page.goto(f"{BASE_URL}/dags/{DAG}/runs/{run_id}", wait_until="networkidle", timeout=120_000)
        page.wait_for_timeout(2000)
        page.screenshot(path=str(ARTIFACTS / "compose_ui_run.png"), full_page=True)
        body = page.locator("body").inner_text()
        browser.close()
    assert status == "partial"
    assert len(rows) == len(BAD_CLIPS) and all(
        any(k in r for k in BAD_CLIPS.values()) for r in rows
    ), rows
    # The run's note, which report_day wrote through the REST API (connection airflow_api).
    assert f"Day {DAY} partial: ok 6, failed {len(BAD_CLIPS)}" in body and "Success" in body, body[
        :2000
    ]
    assert (ARTIFACTS / "compose_ui_run.png").stat().st_size > 10_000
