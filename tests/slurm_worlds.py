"""The SLURM worlds the real-SLURM tests run in, picked by one fixture parameter:

- ``bed``: the native single-node SLURM 22.05 test bed (hpc/devcluster/provision.sh), the one
  ``make demo`` runs; always on.
- ``cluster``: the multi-node SLURM 24.11 cluster in containers (hpc/cluster/cluster.sh:
  slurmctld, slurmdbd + MariaDB, login, c1, c2). On with ``AUDIO_TEST_CLUSTER=1`` (CI, after
  ``make cluster-up``); otherwise its tests are skipped, saying so.

Tests see both through the same facts (``devcluster``: SSH host, port, user, key, pinned host
key) and the same :class:`SlurmWorld` controls: SLURM commands as root on the controller,
sshd and slurmdbd stopped and started. A test module opts in by importing the fixtures it
needs (``world_devcluster`` and ``world_ssh_conn_id`` override the root conftest's
``devcluster`` and ``ssh_conn_id`` for the module)::

    from slurm_worlds import slurm_world, world_devcluster, world_ssh_conn_id  # noqa
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

REPO = Path(__file__).resolve().parents[1]
PROVISION = REPO / "hpc" / "devcluster" / "provision.sh"
CLUSTER = REPO / "hpc" / "cluster" / "cluster.sh"
DOCKER_ENGINE = REPO / "scripts" / "docker_engine.sh"
CLUSTER_ENABLED = os.environ.get("AUDIO_TEST_CLUSTER") == "1"


def _facts(command: list[str]) -> dict[str, str]:
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return {
        k: v.strip('"') for k, v in (line.split("=", 1) for line in out.splitlines() if "=" in line)
    }


def _until(predicate: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.5)


@dataclass
class SlurmWorld:
    """One SLURM installation and how a test drives its faults."""

    name: str  # "bed" | "cluster"
    version: str  # "22.05", "24.11"
    facts: dict[str, str]  # DEVCLUSTER_* (ssh host, port, user, key, known_hosts, host key)
    scratch: Path  # a dir every node sees, at the same path as on this host
    compute_nodes: list[str] = field(default_factory=list)  # SLURM's node names

    def slurm(self, argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
        """A SLURM client command as root, where the controller is."""
        return subprocess.run(
            self._on("slurmctld", argv), capture_output=True, text=True, timeout=timeout
        )

    def stop_sshd(self) -> None:
        """The login node's sshd gone, with the sessions it serves (a restarted sshd alone
        leaves existing sessions alive)."""
        raise NotImplementedError

    def start_sshd(self) -> None:
        raise NotImplementedError

    def stop_slurmdbd(self) -> None:
        raise NotImplementedError

    def start_slurmdbd(self) -> None:
        raise NotImplementedError

    def _on(self, node: str, argv: list[str]) -> list[str]:
        return list(argv)

    def accounting_up(self) -> bool:
        return self.slurm(["sacctmgr", "-n", "list", "cluster"]).returncode == 0


class NativeBed(SlurmWorld):
    """Everything runs on this host; daemons are stopped by their pid files."""

    SSHD_PIDFILE = "/run/devcluster-sshd.pid"
    SSHD = [
        "/usr/sbin/sshd",
        "-f",
        "/var/lib/hpc-devcluster/sshd_config",
        "-E",
        "/var/log/hpc-devcluster/sshd.log",
    ]

    def stop_sshd(self) -> None:
        _terminate(self.SSHD_PIDFILE)
        port = int(self.facts["DEVCLUSTER_SSH_PORT"])
        conns = psutil.net_connections(kind="tcp")
        ours = {
            c.laddr.port for c in conns if c.pid == os.getpid() and c.raddr and c.raddr.port == port
        }
        for pid in {
            c.pid
            for c in conns
            if c.pid and c.laddr.port == port and c.raddr and c.raddr.port in ours
        }:
            psutil.Process(pid).terminate()

    def start_sshd(self) -> None:
        if not _alive(self.SSHD_PIDFILE):
            subprocess.run(self.SSHD, check=True)
            _until(lambda: _alive(self.SSHD_PIDFILE), 10, "sshd back")

    def stop_slurmdbd(self) -> None:
        _terminate("/run/slurmdbd.pid")

    def start_slurmdbd(self) -> None:
        if not _alive("/run/slurmdbd.pid"):
            subprocess.run(["/usr/sbin/slurmdbd"], check=True)
        _until(self.accounting_up, 60, "slurmdbd back")


class Cluster(SlurmWorld):
    """Nodes are containers of the private Docker engine (scripts/docker_engine.sh)."""

    def _docker(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            self._on(None, list(args)), capture_output=True, text=True, check=True
        )

    def _on(self, node: str | None, argv: list[str]) -> list[str]:
        """argv run on ``node`` (``docker exec``), or a docker command when node is None."""
        exec_ = [] if node is None else ["exec", f"hpc-cluster-{node}"]
        return ["env", f"DOCKER_HOST={docker_host()}", "docker", *exec_, *argv]

    def stop_node(self, node: str, kill: bool = False) -> None:
        """``docker kill`` (the node dies at once) or ``docker stop`` (its daemon exits)."""
        self._docker(
            *(
                ["kill", f"hpc-cluster-{node}"]
                if kill
                else ["stop", "-t", "2", f"hpc-cluster-{node}"]
            )
        )

    def start_node(self, node: str) -> None:
        self._docker("start", f"hpc-cluster-{node}")

    def restart_controller(self) -> None:
        """slurmctld stopped and started again (its state save survives in the node)."""
        self._docker("restart", "-t", "5", "hpc-cluster-slurmctld")

    def stop_sshd(self) -> None:
        self.stop_node("login")  # the login node's sshd is its main process

    def start_sshd(self) -> None:
        self.start_node("login")
        _until(
            lambda: (
                subprocess.run(
                    [
                        "bash",
                        "-c",
                        f"exec 3<>/dev/tcp/127.0.0.1/{self.facts['DEVCLUSTER_SSH_PORT']}",
                    ],
                    capture_output=True,
                ).returncode
                == 0
            ),
            30,
            "login node's sshd back",
        )

    def stop_slurmdbd(self) -> None:
        """The daemon only: its host stays up (a stopped container's name stops resolving,
        and clients then wait minutes on DNS instead of being refused)."""
        self._docker(
            "exec",
            "hpc-cluster-slurmdbd",
            "bash",
            "-c",
            'kill "$(cat /run/slurmdbd.pid)"; while pgrep -x slurmdbd; do sleep 0.2; done',
        )

    def start_slurmdbd(self) -> None:
        self._docker(
            "exec",
            "hpc-cluster-slurmdbd",
            "bash",
            "-c",
            "pgrep -x slurmdbd >/dev/null || /usr/sbin/slurmdbd",
        )
        _until(self.accounting_up, 90, "slurmdbd back")


def docker_host() -> str:
    """The private engine's socket (``scripts/docker_engine.sh env``)."""
    out = subprocess.run(
        ["bash", str(DOCKER_ENGINE), "env"], check=True, capture_output=True, text=True
    ).stdout
    return out.strip().split("DOCKER_HOST=", 1)[1]


def _alive(pidfile: str) -> bool:
    try:
        with open(pidfile) as fh:
            return psutil.pid_exists(int(fh.read().strip()))
    except (OSError, ValueError):
        return False


def _terminate(pidfile: str) -> None:
    with open(pidfile) as fh:
        proc = psutil.Process(int(fh.read().strip()))
    proc.terminate()
    proc.wait(timeout=15)


def open_world(name: str) -> SlurmWorld:
    """Bring the world up (idempotent) and describe it."""
    if name == "bed":
        subprocess.run(
            ["bash", str(PROVISION), "configure", "start"], check=True, capture_output=True
        )
        return NativeBed(
            "bed",
            "22.05",
            _facts(["bash", str(PROVISION), "env"]),
            Path("/tmp"),
            [socket.gethostname().split(".")[0]],
        )
    if not CLUSTER_ENABLED:
        pytest.skip(
            "the SLURM 24.11 cluster tier is off: `make cluster-up`, then run with "
            "AUDIO_TEST_CLUSTER=1 (needs Docker: scripts/docker_engine.sh)"
        )
    if not shutil.which("dockerd"):
        pytest.skip("no Docker engine (dockerd) on this machine: the 24.11 cluster cannot run")
    subprocess.run(["bash", str(CLUSTER), "up"], check=True, capture_output=True)
    facts = _facts(["bash", str(CLUSTER), "env"])
    return Cluster("cluster", "24.11", facts, Path(facts["CLUSTER_SHARED"]), ["c1", "c2"])


@pytest.fixture(scope="module", params=["bed", "cluster"])
def slurm_world(request: pytest.FixtureRequest) -> SlurmWorld:
    return open_world(request.param)


@pytest.fixture(scope="module", name="devcluster")
def world_devcluster(slurm_world: SlurmWorld) -> dict[str, str]:
    """The root conftest's ``devcluster``, for the module's world."""
    return slurm_world.facts


@pytest.fixture(scope="module", name="ssh_conn_id")
def world_ssh_conn_id(slurm_world: SlurmWorld) -> Iterator[str]:
    """``hpc_ssh`` pointing at the module's world (host key pinned), restored afterwards so
    that other modules keep the bed."""
    facts = slurm_world.facts
    before = os.environ.get("AIRFLOW_CONN_HPC_SSH")
    os.environ["AIRFLOW_CONN_HPC_SSH"] = json.dumps(
        {
            "conn_type": "ssh",
            "host": facts["DEVCLUSTER_SSH_HOST"],
            "port": int(facts["DEVCLUSTER_SSH_PORT"]),
            "login": facts["DEVCLUSTER_USER"],
            "extra": {
                "key_file": facts["DEVCLUSTER_KEY"],
                "host_key": facts["DEVCLUSTER_HOST_KEY"],
                "no_host_key_check": False,
            },
        }
    )
    yield "hpc_ssh"
    if before is None:
        os.environ.pop("AIRFLOW_CONN_HPC_SSH", None)
    else:
        os.environ["AIRFLOW_CONN_HPC_SSH"] = before
