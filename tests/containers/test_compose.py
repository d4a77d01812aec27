"""docker-compose.yaml, checked without a Docker engine: Debian's docker-compose (1.29) validates
it offline; the resolved file has every service of the design, the dev cluster image is built
by the project's provisioning script, every image can trust a TLS-inspecting proxy's CAs, and
the Airflow connections pin the cluster's host key, which a throwaway sshd proves is verified:
the right key passes, a wrong or missing one fails. The stack started for real, a whole day
through it: test_compose_e2e.py (`make compose-test`).
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
DESIGN_SERVICES = AIRFLOW_SERVICES | {"postgres", "hpc"}


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
    assert services["airflow-init"]["depends_on"]["hpc"]["condition"] == "service_healthy"
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


def test_hpc_image_is_built_by_the_provisioning_script(resolved: dict) -> None:
    hpc = resolved["services"]["hpc"]
    dockerfile = REPO / hpc["build"]["dockerfile"]
    steps = _dockerfile_instructions(dockerfile)
    assert steps[0] == ("FROM", "debian:12.12-slim")
    copies = [args for op, args in steps if op == "COPY"]
    assert "hpc/devcluster/provision.sh /opt/audio-pipeline/hpc/devcluster/provision.sh" in copies
    # Besides trusting a proxy's CAs (EXTRA_CA_CERTS, a no-op by default), only provision.sh.
    runs = [args for op, args in steps if op == "RUN" and args != "install-extra-ca"]
    assert runs and all(
        "/opt/audio-pipeline/hpc/devcluster/provision.sh install" in r for r in runs
    )
    # ... and nothing of its own: no package managers or service setup outside provision.sh.
    assert not re.search(
        r"apt-get install|pip install|useradd|slurm\.conf|ssh-keygen", " ".join(runs)
    )
    entry = (REPO / "docker" / "hpc-entrypoint.sh").read_text()
    assert re.search(r'bash "\$PROVISION" configure start', entry)
    assert "/opt/audio-pipeline/hpc/devcluster/provision.sh" in entry
    env = env_of(hpc)
    assert env["DEVCLUSTER_SSH_LISTEN"] == "0.0.0.0"
    assert mounts(hpc)[env["DEVCLUSTER_STATE"]].startswith("hpc-state")
    assert hpc["hostname"] == "hpc" and hpc["init"] is True and hpc["tmpfs"] == ["/run"]
    sample = resolved["services"]["sample-clips"]
    assert sample["image"] == hpc["image"]


DOCKERFILES = sorted((REPO / "docker").glob("*.Dockerfile")) + sorted(
    (REPO / "docker" / "standins").glob("*.Dockerfile")
)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_image_trusts_extra_cas_before_it_installs_anything(dockerfile: Path) -> None:
    """Behind a TLS-inspecting proxy apt and pip fail unless the build trusts its CAs first."""
    steps = _dockerfile_instructions(dockerfile)
    assert ("ARG", "EXTRA_CA_CERTS=") in steps
    assert ("COPY", "docker/install-extra-ca.sh /usr/local/sbin/install-extra-ca") in steps
    runs = [args for op, args in steps if op == "RUN"]
    assert runs[0] == "install-extra-ca", "the CAs come before any RUN that could fetch something"


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
    assert mounts(resolved["services"]["hpc"])[config.source_root].startswith("audio-source")
    assert config.staging_root.startswith(config.remote_root)
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
        hpc_env = env_of(services["hpc"])
        assert (ssh["host"], str(ssh["port"]), ssh["login"]) == (
            services["hpc"]["hostname"],
            hpc_env["DEVCLUSTER_SSH_PORT"],
            hpc_env["DEVCLUSTER_USER"],
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
    # The cluster's state volume (host private key, slurmdbd password) reaches Airflow only
    # through airflow-init, read-only.
    holders = {
        n: m for n, s in services.items() for m in mounts(s).values() if m.startswith("hpc-state")
    }
    assert holders == {"hpc": "hpc-state:rw", "airflow-init": "hpc-state:ro"}


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
    """What provision.sh configure_ssh leaves in DEVCLUSTER_STATE."""
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
    _fake_state(tmp_path / "state", 2222)
    ssh_dir = tmp_path / "home" / ".ssh"
    proc = _pin(tmp_path / "state", ssh_dir, "hpc", 2222)
    assert proc.returncode == 0, proc.stderr
    key = (tmp_path / "state" / "ssh_host_ed25519_key.pub").read_text().split()[:2]
    assert (ssh_dir / "known_hosts").read_text() == f"[hpc]:2222 {key[0]} {key[1]}\n"
    pinned_key = ssh_dir / "devcluster_key"
    assert pinned_key.read_bytes() == (tmp_path / "state" / "client_key").read_bytes()
    assert (pinned_key.stat().st_uid, pinned_key.stat().st_mode & 0o777) == (12345, 0o600)
    assert (ssh_dir.stat().st_uid, ssh_dir.stat().st_mode & 0o777) == (12345, 0o700)
    assert _pin(tmp_path / "state", ssh_dir, "hpc", 22).returncode == 0
    assert (
        (ssh_dir / "known_hosts").read_text().startswith("hpc ssh-ed25519 ")
    )  # default port: bare name
    proc = _pin(tmp_path / "missing", ssh_dir, "hpc", 2222)
    assert proc.returncode == 1 and "has the hpc service started once?" in proc.stderr


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
