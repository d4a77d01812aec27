"""docker-compose.yaml, checked without a Docker engine: Debian's docker-compose (1.29) validates
it offline; the resolved file has every service of the design, the SLURM 24.11 cluster's nodes
are the native cluster's (hpc/cluster/: one node image, node.sh roles, configure.sh the one
place its config comes from) with the runtime the project's provisioning script builds, every
image can trust a TLS-inspecting proxy's CAs, and the Airflow connections pin the login node's
host key, which a throwaway sshd proves is verified: the right key passes, a wrong or missing
one fails. The stack started for real, a whole day through it: test_compose_e2e.py
(`make compose-test`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from support import REPO

COMPOSE = REPO / "docker-compose.yaml"
AIRFLOW_SERVICES = {
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
}
NODES = {"slurmdbd": "db", "slurmctld": "ctld", "c1": "compute", "c2": "compute", "login": "login"}
CLUSTER_SERVICES = {"cluster-init", *NODES}
DESIGN_SERVICES = AIRFLOW_SERVICES | CLUSTER_SERVICES | {"postgres", "sample-clips"}
CLUSTER = REPO / "hpc" / "cluster"
NODE_DOCKERFILE = CLUSTER / "node.Dockerfile"


def compose(*args: str, file: Path = COMPOSE) -> subprocess.CompletedProcess:
    if not shutil.which("docker-compose"):
        pytest.fail("docker-compose is not installed (apt-get install -y docker-compose)")
    # Only PATH and HOME: the file's ${VAR:-default}s resolve to their defaults.
    env = {k: os.environ[k] for k in ("PATH", "HOME") if k in os.environ}
    return subprocess.run(
        ["docker-compose", "-f", str(file), "--project-directory", str(REPO), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


@pytest.fixture(scope="module")
def resolved() -> dict:
    """The file as compose itself resolves it (anchors, merge keys, ${VAR:-default})."""
    proc = compose("config")
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    return env if isinstance(env, dict) else dict(e.split("=", 1) for e in env)


def mounts(service: dict) -> dict[str, str]:
    """container path -> 'source[:mode]' of a resolved service."""
    out = {}
    for v in service.get("volumes", []):
        src, dst, *mode = v.split(":") if isinstance(v, str) else (v["source"], v["target"])
        out[dst] = ":".join([src, *mode])
    return out


def test_compose_file_validates() -> None:
    proc = compose("config", "-q")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("breakage", ["ports", "depends_on"])
def test_a_broken_copy_fails_validation(tmp_path: Path, breakage: str) -> None:
    doc = yaml.safe_load(COMPOSE.read_text())
    if breakage == "ports":
        doc["services"]["airflow-apiserver"]["ports"] = [{"bogus": 1}]
    else:
        doc["services"]["airflow-scheduler"]["depends_on"]["airflow-init"]["condition"] = (
            "service_done"
        )
    broken = tmp_path / "docker-compose.yaml"
    broken.write_text(yaml.safe_dump(doc))
    proc = compose("config", "-q", file=broken)
    assert proc.returncode == 1 and "is invalid" in proc.stderr, proc.stderr


def test_every_service_of_the_design_exists(resolved: dict) -> None:
    services = resolved["services"]
    assert DESIGN_SERVICES <= set(services)
    for name in AIRFLOW_SERVICES - {"airflow-init"}:
        svc = services[name]
        assert env_of(svc)["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        assert svc["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
        assert "healthcheck" in svc, name
    # Airflow starts once the cluster serves jobs (the login node's healthcheck says so).
    assert services["airflow-init"]["depends_on"]["login"]["condition"] == "service_healthy"
    assert services["airflow-apiserver"]["command"] == "api-server"
    assert services["airflow-apiserver"]["ports"] == ["127.0.0.1:8080:8080/tcp"]  # loopback only
    # One PostgreSQL for Airflow's metadata and the results DB.
    assert (
        "@postgres:5432/airflow"
        in env_of(services["airflow-scheduler"])["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    )
    results = json.loads(env_of(services["airflow-scheduler"])["AIRFLOW_CONN_AUDIO_RESULTS_DB"])
    assert (results["host"], results["schema"]) == ("postgres", "audio_results")
    init_sql = (REPO / "docker" / "postgres-init.sql").read_text()
    assert "CREATE DATABASE audio_results OWNER audio" in init_sql


def test_airflow_image_is_the_official_one_plus_the_project_requirements() -> None:
    text = (REPO / "docker" / "airflow.Dockerfile").read_text()
    assert re.search(r"^FROM apache/airflow:3\.3\.\d+-python3\.11$", text, re.M)
    assert "pip install --no-cache-dir -r /tmp/requirements.txt" in text
    assert "COPY requirements.txt" in text


def _dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    return [(m[1].upper(), m[2]) for m in re.finditer(r"^(\w+)\s+(.*)$", text, re.M)]


def _stages(path: Path) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """stage name -> (what it is built FROM, its instructions), of a multi-stage Dockerfile."""
    stages: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    steps: list[tuple[str, str]] = []
    for op, args in _dockerfile_instructions(path):
        if op == "FROM":
            base, _, name = args.partition(" AS ")
            steps = []
            stages[name.strip() or str(len(stages))] = (base.strip(), steps)
        elif stages:
            steps.append((op, args))
    return stages


def test_cluster_nodes_are_the_native_clusters_with_the_provisioned_runtime(resolved: dict) -> None:
    services = resolved["services"]
    nodes = {name: services[name] for name in CLUSTER_SERVICES}
    # One image for every node, built once (by cluster-init's build) from the native
    # cluster's Dockerfile; each node is a node.sh role.
    assert {n["image"] for n in nodes.values()} == {"audio-pipeline-slurm-node:dev"}
    assert [name for name, n in nodes.items() if "build" in n] == ["cluster-init"]
    build = nodes["cluster-init"]["build"]
    assert (Path(build["context"]) / build["dockerfile"], build["target"]) == (
        NODE_DOCKERFILE,
        "compose",
    )
    assert build["args"]["BASE"] == "debian:13-slim"  # CLUSTER_NODE_BASE: cluster.sh's root
    assert {name: n["command"] for name, n in nodes.items()} == {
        "cluster-init": ["init"],
        **{name: [role] for name, role in NODES.items()},
    }
    for name, node in nodes.items():
        assert node["init"] is True and node["tmpfs"] == ["/run"], name
        assert node.get("hostname", "cluster-init") == name, name  # slurm.conf's node names
        if name != "cluster-init":
            assert node["depends_on"]["cluster-init"]["condition"] == (
                "service_completed_successfully"
            )
            assert mounts(node)["/cluster"] == "cluster-conf:ro", name
    assert services["login"]["healthcheck"]["test"] == [
        "CMD",
        "/usr/local/sbin/node.sh",
        "health",
    ]

    stages = _stages(NODE_DOCKERFILE)
    assert list(stages) == ["node", "runtime", "compose"]  # node first: cluster.sh's target
    assert "--target node" in (CLUSTER / "cluster.sh").read_text()
    # The runtime: Debian 12 (the venv's Python 3.11), built by provision.sh's `runtime` step,
    # plus the static FFmpeg; no package managers or service setup of its own.
    base, steps = stages["runtime"]
    assert base == "${RUNTIME_BASE}"
    assert ("ARG", "RUNTIME_BASE=debian:12.12-slim") in _dockerfile_instructions(NODE_DOCKERFILE)
    runs = [args for op, args in steps if op == "RUN" and args != "install-extra-ca"]
    assert len(runs) == 2
    assert "/opt/audio-pipeline/hpc/devcluster/provision.sh runtime" in runs[0]
    assert "/opt/audio-pipeline/hpc/cluster/static-ffmpeg.sh" in runs[1]
    assert not re.search(
        r"apt-get install|pip install|useradd|slurm\.conf|ssh-keygen", " ".join(runs)
    )
    # The compose nodes get the runtime at exactly the paths the native nodes bind-mount it at.
    base, steps = stages["compose"]
    assert base == "node"
    copied = {
        args.split()[-1]: args.split()[-2]
        for op, args in steps
        if op == "COPY" and args.startswith("--from=runtime ")
    }
    native = yaml.safe_load((CLUSTER / "compose.yaml").read_text())["x-node"]["volumes"]
    runtime_mounts = {v.split(":")[1] for v in native if v.split(":")[0] != "${CLUSTER_CONF}"}
    runtime_mounts.discard("${CLUSTER_SHARED}")
    assert set(copied) == runtime_mounts
    assert copied["/usr/local/bin/ffmpeg"] == "/opt/static-ffmpeg/ffmpeg"
    assert all(copied[p] == p for p in runtime_mounts - {"/usr/local/bin/ffmpeg"})
    # sample-clips runs the runtime stage of the same Dockerfile.
    sample = services["sample-clips"]
    assert (sample["build"]["dockerfile"], sample["build"]["target"]) == (
        "hpc/cluster/node.Dockerfile",
        "runtime",
    )


def test_the_cluster_config_comes_from_configure_sh_alone() -> None:
    """One place writes slurm.conf and the secrets: natively cluster.sh runs configure.sh, in
    compose cluster-init does (node.sh init); nothing else spells the cluster's config."""
    assert 'bash "$HERE/configure.sh" "$CONF" "$DATA"' in (CLUSTER / "cluster.sh").read_text()
    assert 'init) exec bash "$HERE/configure.sh" /cluster /cluster-client' in (
        (CLUSTER / "node.sh").read_text()
    )
    spelled = [
        p.relative_to(REPO)
        for p in [*REPO.glob("hpc/**/*"), *REPO.glob("docker/**/*"), COMPOSE]
        if p.is_file() and "PartitionName=" in p.read_text(errors="replace")
    ]
    assert sorted(map(str, spelled)) == [
        "hpc/cluster/configure.sh",
        "hpc/devcluster/provision.sh",  # the native 22.05 bed's own one-node slurm.conf
    ]


def test_configure_sh_makes_secrets_once_and_keeps_the_private_key_off_the_nodes(
    tmp_path: Path,
) -> None:
    conf, client = tmp_path / "conf", tmp_path / "client"

    def configure() -> None:
        subprocess.run(
            ["bash", str(CLUSTER / "configure.sh"), str(conf), str(client)],
            check=True,
            timeout=30,
            env={"PATH": os.environ["PATH"], "CLUSTER_NAME": "t24", "KNOWN_HOST": "login"},
        )

    configure()
    secrets = {p.name: p.read_bytes() for p in [*conf.iterdir(), *client.iterdir()]}
    assert set(secrets) >= {
        "slurm.conf",
        "gres.conf",
        "cgroup.conf",
        "slurmdbd.conf",
        "munge.key",
        "ssh_host_ed25519_key",
        "client_key.pub",
        "client_key",
        "known_hosts",
    }
    assert not (conf / "client_key").exists()  # every node mounts conf: no private client key
    slurm_conf = (conf / "slurm.conf").read_text()
    assert "ClusterName=t24\n" in slurm_conf and "NodeName=c[1-2] CPUs=4" in slurm_conf
    password = re.search(r"^StoragePass=(\w{16,})$", (conf / "slurmdbd.conf").read_text(), re.M)
    assert password and password[1] not in slurm_conf
    host_pub = (conf / "ssh_host_ed25519_key.pub").read_text().split()[:2]
    assert (client / "known_hosts").read_text() == f"login {host_pub[0]} {host_pub[1]}\n"
    for private in ("munge.key", "ssh_host_ed25519_key", "slurmdbd.conf"):
        assert (conf / private).stat().st_mode & 0o077 == 0, private
    assert (client / "client_key").stat().st_mode & 0o077 == 0
    configure()  # a restart: same secrets, so the pins made from them still hold
    assert {p.name: p.read_bytes() for p in [*conf.iterdir(), *client.iterdir()]} == secrets


DOCKERFILES = [
    *sorted((REPO / "docker").glob("*.Dockerfile")),
    *sorted((REPO / "docker" / "standins").glob("*.Dockerfile")),
    NODE_DOCKERFILE,
]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_image_trusts_extra_cas_before_it_installs_anything(dockerfile: Path) -> None:
    """Behind a TLS-inspecting proxy apt and pip fail unless the build trusts its CAs first:
    in every stage built on a base image (a stage FROM another inherits its trust)."""
    stages = _stages(dockerfile)
    own = [name for name, (base, _) in stages.items() if base not in stages]
    assert own
    for name in own:
        steps = stages[name][1]
        assert ("ARG", "EXTRA_CA_CERTS=") in steps, name
        assert ("COPY", "docker/install-extra-ca.sh /usr/local/sbin/install-extra-ca") in steps
        runs = [args for op, args in steps if op == "RUN"]
        assert runs[0] == "install-extra-ca", f"{name}: the CAs come before any RUN that fetches"


def test_compose_passes_extra_cas_to_every_build(resolved: dict) -> None:
    builds = [s["build"] for s in resolved["services"].values() if "build" in s]
    assert builds and all(b["args"]["EXTRA_CA_CERTS"] == "" for b in builds)  # empty unless set
    assert resolved["services"]["postgres"]["image"] == "postgres:15-bookworm"  # Debian 12's major


def _install_extra_ca(value: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["sh", str(REPO / "docker" / "install-extra-ca.sh")],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "EXTRA_CA_CERTS": value},
        timeout=30,
    )


def test_install_extra_ca_is_a_no_op_without_certs_and_rejects_text_without_any() -> None:
    assert _install_extra_ca("").returncode == 0  # nothing to do: writes nothing
    proc = _install_extra_ca("not a certificate\n")
    assert proc.returncode == 1 and "holds no PEM certificate" in proc.stderr


def test_jobs_run_without_a_container_runtime_on_the_provisioned_venv(resolved: dict) -> None:
    scheduler = resolved["services"]["airflow-scheduler"]
    config_path = env_of(scheduler)["AUDIO_PIPELINE_CONFIG"]
    host_dir = mounts(scheduler)[str(Path(config_path).parent)].split(":")[0]
    from hpc_pipeline.config import load_config  # plugins/ is on sys.path (conftest)

    config = load_config(str(Path(host_dir) / Path(config_path).name))
    assert config.container_runtime == "none"
    assert config.hpc_python == "/opt/hpc-venv/bin/python"  # provision.sh's HPC_VENV
    assert config.staging_root.startswith(config.remote_root)
    # Where jobs run (compute nodes) and the source is listed (login): the source read-only,
    # the pipeline root on the shared volume, the submit user's home there.
    for name in ("c1", "c2", "login"):
        node = resolved["services"][name]
        assert mounts(node)[config.source_root] == "audio-source:ro", name
        homes = env_of(node)["HOMES"]
        assert mounts(node)[homes] == "cluster-home:rw", name
        assert config.remote_root.startswith(f"{homes}/{env_of(node)['SUBMIT_USER']}/"), name
    # Both compute nodes take a shard at once: the day's shards spread over c1 and c2.
    assert config.resources["audio"].array_parallelism == 2
    for path in ("dags", "plugins", "hpc"):
        assert mounts(scheduler)[f"/opt/airflow/{path}"] == f"{REPO / path}:ro"


def test_connections_are_json_and_pin_the_host_key(resolved: dict) -> None:
    services = resolved["services"]
    for name in AIRFLOW_SERVICES:
        conns = {
            k: json.loads(v)
            for k, v in env_of(services[name]).items()
            if k.startswith("AIRFLOW_CONN_")
        }
        assert {"AIRFLOW_CONN_HPC_SSH", "AIRFLOW_CONN_AUDIO_RESULTS_DB"} <= set(conns), name
        ssh = conns["AIRFLOW_CONN_HPC_SSH"]
        extra = ssh["extra"]
        login = services["login"]
        assert (ssh["host"], str(ssh["port"]), ssh["login"]) == (
            login["hostname"],
            login["expose"][0],
            env_of(login)["SUBMIT_USER"],
        )
        init_env = env_of(services["airflow-init"])
        assert (init_env["HPC_SSH_HOST"], init_env["HPC_SSH_PORT"]) == (
            ssh["host"],
            str(ssh["port"]),
        )
        assert str(extra.get("no_host_key_check", False)).lower() != "true"
        assert str(extra.get("allow_host_key_change", False)).lower() != "true"
        assert extra["key_file"].startswith("/home/airflow/.ssh/")
        # The pin lives in the Airflow user's ~/.ssh, a volume only airflow-init writes.
        ssh_mount = mounts(services[name])["/home/airflow/.ssh"]
        assert ssh_mount == ("airflow-ssh:rw" if name == "airflow-init" else "airflow-ssh:ro")

    # Airflow's client key reaches Airflow only through airflow-init, read-only; the nodes'
    # secrets (host key, munge key, slurmdbd password) never reach it.
    def holders(volume: str) -> dict[str, str]:
        return {
            n: m
            for n, s in services.items()
            for m in mounts(s).values()
            if m.split(":")[0] == volume
        }

    assert holders("cluster-client") == {
        "cluster-init": "cluster-client:rw",
        "airflow-init": "cluster-client:ro",
    }
    assert holders("cluster-conf") == {
        "cluster-init": "cluster-conf:rw",
        **{name: "cluster-conf:ro" for name in NODES},
    }


def test_ssh_hook_from_the_compose_connection_verifies_host_keys(
    resolved: dict, monkeypatch
) -> None:
    from airflow.providers.ssh.hooks.ssh import SSHHook

    conn = env_of(resolved["services"]["airflow-scheduler"])["AIRFLOW_CONN_HPC_SSH"]
    monkeypatch.setenv("AIRFLOW_CONN_COMPOSE_HPC_SSH", conn)
    hook = SSHHook(ssh_conn_id="compose_hpc_ssh")
    # No host_key extra, no skip, no change allowed: get_conn() loads ~/.ssh/known_hosts and
    # keeps paramiko's default RejectPolicy for hosts not found there.
    assert (hook.no_host_key_check, hook.host_key, hook.allow_host_key_change) == (
        False,
        None,
        False,
    )


# ---------------------------------------------------------------------------- the pin, for real


def _fake_state(state: Path, port: int) -> None:
    """What configure.sh leaves for Airflow (its CLIENT directory) and the login node's key."""
    state.mkdir()
    for key in ("ssh_host_ed25519_key", "client_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(state / key)], check=True
        )
    host_pub = (state / "ssh_host_ed25519_key.pub").read_text().split()
    (state / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")


def _pin(state: Path, ssh_dir: Path, host: str, port: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(REPO / "docker" / "airflow-init.sh"), "pin"],
        capture_output=True,
        text=True,
        timeout=30,
        env={
            **os.environ,
            "DEVCLUSTER_STATE": str(state),
            "AIRFLOW_SSH_DIR": str(ssh_dir),
            "HPC_SSH_HOST": host,
            "HPC_SSH_PORT": str(port),
            "AIRFLOW_UID": "12345",
        },
    )


def test_airflow_init_rewrites_the_pin_for_the_compose_host_name(tmp_path: Path) -> None:
    _fake_state(tmp_path / "state", 2223)
    ssh_dir = tmp_path / "home" / ".ssh"
    proc = _pin(tmp_path / "state", ssh_dir, "login", 2222)
    assert proc.returncode == 0, proc.stderr
    key = (tmp_path / "state" / "ssh_host_ed25519_key.pub").read_text().split()[:2]
    assert (ssh_dir / "known_hosts").read_text() == f"[login]:2222 {key[0]} {key[1]}\n"
    pinned_key = ssh_dir / "devcluster_key"
    assert pinned_key.read_bytes() == (tmp_path / "state" / "client_key").read_bytes()
    assert (pinned_key.stat().st_uid, pinned_key.stat().st_mode & 0o777) == (12345, 0o600)
    assert (ssh_dir.stat().st_uid, ssh_dir.stat().st_mode & 0o777) == (12345, 0o700)
    assert _pin(tmp_path / "state", ssh_dir, "login", 22).returncode == 0
    assert (
        (ssh_dir / "known_hosts").read_text().startswith("login ssh-ed25519 ")
    )  # default port (the compose stack's): bare name
    proc = _pin(tmp_path / "missing", ssh_dir, "login", 22)
    assert proc.returncode == 1 and "has cluster-init run?" in proc.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def throwaway_sshd(tmp_path: Path):
    """An sshd on a loopback port that lets nobody in: enough to see the host key check."""
    if os.geteuid() != 0 or not Path("/usr/sbin/sshd").exists():
        pytest.skip("needs root and openssh-server (CI and the test bed have both)")
    port = _free_port()
    state = tmp_path / "state"
    _fake_state(state, port)
    config = tmp_path / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {state}/ssh_host_ed25519_key\n"
        "PidFile none\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "AllowUsers nobody-may-log-in\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
    proc = subprocess.Popen(
        ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None, proc.communicate()[1].decode()
            assert time.monotonic() < deadline, "sshd did not start"
            time.sleep(0.1)
    yield state, port
    proc.terminate()
    proc.wait(timeout=10)


def test_the_pinned_host_key_is_verified(
    throwaway_sshd, tmp_path: Path, resolved: dict, monkeypatch
) -> None:
    import paramiko
    from airflow.providers.ssh.hooks.ssh import SSHHook

    state, port = throwaway_sshd
    home = tmp_path / "home"
    assert _pin(state, home / ".ssh", "127.0.0.1", port).returncode == 0
    monkeypatch.setenv("HOME", str(home))
    conn = json.loads(env_of(resolved["services"]["airflow-scheduler"])["AIRFLOW_CONN_HPC_SSH"])
    conn.update(host="127.0.0.1", port=port)
    conn["extra"].update(
        key_file=str(home / ".ssh" / "devcluster_key"),
        known_hosts=str(home / ".ssh" / "known_hosts"),
    )
    monkeypatch.setenv("AIRFLOW_CONN_PIN_TEST", json.dumps(conn))

    def connect() -> Exception:
        with pytest.raises(paramiko.SSHException) as info:
            SSHHook(ssh_conn_id="pin_test", conn_retry_attempts=1, conn_timeout=10).get_conn()
        return info.value

    # The right key: the host is accepted and only authentication fails (nobody may log in).
    assert isinstance(connect(), paramiko.AuthenticationException)
    # Another key under the same name: refused before authentication.
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    known_hosts = home / ".ssh" / "known_hosts"
    name = known_hosts.read_text().split()[0]
    known_hosts.write_text(f"{name} {' '.join(Path(f'{other}.pub').read_text().split()[:2])}\n")
    assert isinstance(connect(), paramiko.BadHostKeyException)
    # No pin at all: rejected, never trusted on first use.
    known_hosts.write_text("")
    err = connect()
    assert "not found in known_hosts" in str(err)
    assert not isinstance(err, (paramiko.AuthenticationException, paramiko.BadHostKeyException))
