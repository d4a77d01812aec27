"""Real node loss on the 24.11 cluster: the compute node running a shard is ``docker kill``ed
mid-shard. SLURM notices (SlurmdTimeout 10 s), marks the node DOWN and requeues the batch job
(JobRequeue=1); the shard runs again on the other node and resumes after its last finished
clip on the shared volume. Every clip ends with exactly one result line. The pipeline's own
trigger watches the array meanwhile and names the node that died under the shard."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from audio_hpc.contract import Manifest, iter_result_lines
from clips import make_day
from hpc_pipeline.triggers.slurm import SlurmJobTrigger
from slurm_jobs import Bed, wait_job
from slurm_worlds import (
    Cluster,
    SlurmWorld,
    open_world,
    world_devcluster,  # noqa: F401  (fixture)
    world_ssh_conn_id,  # noqa: F401  (fixture)
)
from support import MODEL, MODELS_DIR

# SLURM holds a job requeued after NODE_FAIL for ~2 min before it runs again.
pytestmark = pytest.mark.timeout(1500)
DATE = "2026-11-21"
SHARD_SIZE = 7


@pytest.fixture(scope="module")
def slurm_world() -> SlurmWorld:
    """The cluster only: the bed has one node to lose."""
    return open_world("cluster")


def _until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout} s")


def _squeue(world: SlurmWorld, job: str) -> dict[str, tuple[str, str]]:
    """{array task id: (state, node)} from the controller."""
    out = world.slurm(["squeue", "-h", "-r", "-t", "all", "-j", job, "-o", "%i|%T|%N"]).stdout
    return {i: (s, n) for i, s, n in (line.split("|") for line in out.splitlines())}


class Watch(threading.Thread):
    """The pipeline's SLURM trigger on ``job`` (an array of ``size``), in a thread: its log
    lines and its one event, as a deferred task would see them."""

    def __init__(self, ssh_conn_id: str, job: str, size: int) -> None:
        super().__init__(daemon=True)
        self.lines: list[str] = []
        self.events: list[dict[str, Any]] = []
        self.trigger = SlurmJobTrigger(
            ssh_conn_id=ssh_conn_id, job_ids=[job], array_size=size, poll_interval=1,
            max_poll_interval=2,
        )  # fmt: skip
        logger = logging.getLogger(f"node-loss-watch-{job}")
        logger.setLevel(logging.INFO)
        logger.addHandler(_Lines(self.lines))
        self.trigger._log = logger  # type: ignore[assignment]

    def run(self) -> None:
        async def first() -> None:
            async for event in self.trigger.run():
                self.events.append(event.payload)
                return

        asyncio.run(first())


class _Lines(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__()
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_killed_node_shard_finishes_on_the_other_node(bed: Bed, ssh_conn_id: str) -> None:
    world = bed.world
    assert isinstance(world, Cluster)
    make_day(bed.source / DATE)
    common = ("--date", DATE, "--staging-root", str(bed.staging))
    for script, extra in (
        (
            "0_master_scheduler.sh",
            (
                "--backend",
                "local",
                "--source-root",
                str(bed.source),
                "--shard-size",
                str(SHARD_SIZE),
            ),
        ),
        ("1_globus_transfer_job.sh", ("--backend", "local")),
    ):
        job = bed.sbatch(script, *common, *extra)
        assert set(wait_job(world, job).values()) == {"COMPLETED"}, bed.log(job)[-2000:]
    day = bed.staging / DATE
    manifest = Manifest.from_json((day / "manifest.json").read_text())
    assert len(manifest.shards) == 2
    results = day / "results" / manifest.plan_id
    job = bed.sbatch(
        "2_process_audio_job.sh",
        *common,
        "--models-dir",
        MODELS_DIR,
        "--model",
        MODEL,
        "--workers",
        "2",
        "--batch-size",
        "8",
        "--max-clip-seconds",
        "30",
        sbatch_opts=("--array=0-1", "--cpus-per-task=2", "--mem=4G"),
    )
    watch = Watch(ssh_conn_id, job, 2)
    watch.start()
    shard0 = results / "shard-0000.jsonl"
    _until(
        lambda: shard0.exists() and shard0.read_text().count("\n") >= 1,
        300,
        "shard 0's first result line",
    )
    state, victim = _squeue(world, job)[f"{job}_0"]
    assert state == "RUNNING" and victim in world.compute_nodes
    lines_before = shard0.read_text().count("\n")
    killed_at = time.monotonic()
    world.stop_node(victim, kill=True)
    try:
        down = _until(
            lambda: (
                "down" in (s := world.slurm(["sinfo", "-h", "-n", victim, "-o", "%T %E"]).stdout)
                and s
            ),
            60,
            f"{victim} DOWN",
        )
        noticed_s = time.monotonic() - killed_at
        # requeued, not failed: the same job id runs again, on the surviving node
        done = _until(
            lambda: (
                (q := _squeue(world, job))
                and all(s == "COMPLETED" for s, _ in q.values())
                and len(q) == 2
                and q
            ),
            600,
            "the array completed after the node loss",
        )
    finally:
        world.start_node(victim)
    survivor = next(n for n in world.compute_nodes if n != victim)
    watch.join(timeout=60)
    assert watch.events and watch.events[0]["status"] == "success", (watch.events, watch.lines)
    # the watch named the node lost under the shard while SLURM held it requeued
    lost = f"node {victim} failed under job {job}_0 (NODE_FAIL); SLURM requeued it"
    assert any(line.startswith(lost) for line in watch.lines), watch.lines
    assert done[f"{job}_0"][1] == survivor, done
    history = world.slurm(
        ["sacct", "-X", "-D", "-n", "-P", "-j", f"{job}_0", "-o", "JobID,State,NodeList"]
    ).stdout
    assert f"NODE_FAIL|{victim}" in history and f"COMPLETED|{survivor}" in history, history
    lines = [
        r for p in sorted(results.glob("shard-*.jsonl")) for r in iter_result_lines(p.read_text())
    ]
    ids = [r.clip_id for r in lines]
    assert sorted(ids) == sorted(c.clip_id for c in manifest.clips)  # each clip exactly once
    # shard 0's first clips were done on the node that died, the rest on the survivor
    assert {r.node for r in lines if r.array_index == 0} == {victim, survivor}
    print(
        f"node {victim} killed; DOWN after {noticed_s:.1f} s ({down.strip()}); shard 0 "
        f"resumed on {survivor} after {lines_before} clip(s); total "
        f"{time.monotonic() - killed_at:.0f} s"
    )
    _until(
        lambda: "idle" in world.slurm(["sinfo", "-h", "-n", victim, "-o", "%T"]).stdout,
        120,
        f"{victim} back",
    )
