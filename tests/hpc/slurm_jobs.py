"""Submitting and watching the pipeline's SLURM jobs in a SLURM world (the 22.05 bed or the
24.11 cluster, tests/slurm_worlds.py), as the submit user over SSH (the way Airflow does)."""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from slurm_worlds import SlurmWorld
from support import HPC_PYTHON, run_as_submit_user

TERMINAL = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "BOOT_FAIL",
    "DEADLINE",
    "PREEMPTED",
}


@dataclass
class Bed:
    """One test area: ``release`` (code), ``source`` (clips, one dir per day), ``staging``."""

    devcluster: dict[str, str]
    root: Path
    release: Path
    source: Path
    staging: Path
    world: SlurmWorld

    def sbatch(self, script: str, *args: str, sbatch_opts: tuple[str, ...] = ()) -> str:
        """Submit ``hpc/slurm/<script>`` as the submit user over SSH; return the job id."""
        env = [
            "env",
            f"PIPELINE_RELEASE={self.release}",
            "CONTAINER_RUNTIME=none",
            f"HPC_PYTHON={HPC_PYTHON}",
        ]
        argv = [
            *env,
            "sbatch",
            "--parsable",
            f"--output={self.staging}/slurm-%x-%A_%a.out",
            *sbatch_opts,
            str(self.release / "slurm" / script),
            *args,
        ]
        proc = run_as_submit_user(self.devcluster, shlex.join(argv))
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip().split(";")[0]

    def log(self, job: str) -> str:
        """The SLURM output of ``job`` (every array task of it, concatenated)."""
        return "".join(p.read_text() for p in sorted(self.staging.glob(f"slurm-*-{job}_*.out")))

    def scancel(self, job: str) -> None:
        proc = run_as_submit_user(self.devcluster, shlex.join(["scancel", job]))
        assert proc.returncode == 0, proc.stderr


def job_states(world: SlurmWorld, job: str) -> dict[str, str]:
    """{job or array-task id: state}. slurmctld first (``squeue -t all`` keeps finished jobs
    for MinJobAge), accounting when it no longer knows the job; either may be down for a
    moment on a shared test bed, which reads as "no news yet"."""
    queries = (
        ["squeue", "-h", "-t", "all", "-j", job, "-o", "%i|%T"],
        ["sacct", "-X", "-n", "-P", "-j", job, "-o", "JobID,State"],
    )
    for argv in queries:
        proc = world.slurm(argv)
        rows = [line.split("|") for line in proc.stdout.splitlines() if "|" in line]
        if proc.returncode == 0 and rows:
            # "CANCELLED by 1001" -> "CANCELLED"
            return {jid: state.split()[0] for jid, state in rows}
    return {}


def wait_job(world: SlurmWorld, job: str, timeout: float = 300) -> dict[str, str]:
    """Wait until every task of ``job`` is in a terminal state; return the states."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = job_states(world, job)
        if (
            states
            and all(s in TERMINAL for s in states.values())
            and not any("[" in jid for jid in states)
        ):
            return states
        time.sleep(1)
    raise AssertionError(f"job {job} not finished after {timeout} s: {job_states(world, job)}")
