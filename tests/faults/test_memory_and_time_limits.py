"""Fault: a shard exceeds its memory limit, then (memory raised) hangs until its time limit.

Each time the ``audio`` task is red with a message saying which limit and what to change,
followed by the tail of the job's log; the retry with the limit raised resumes the shard
after its last finished clip and the day ends with every clip recorded once.

This bed has no cgroups (TaskPlugin=task/none): SLURM enforces ``--mem`` through
``JobAcctGatherParams=OverMemoryKill`` and then reports the job FAILED (signal 9), not
OUT_OF_MEMORY; the job log's "exceeded memory limit" is what names the cause.
"""

from __future__ import annotations

import collections
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from faults_support import (
    DAY,
    Background,
    assert_recorded_once,
    load_dag,
    result_lines,
    run_day,
    shard_pids,
    staging_day,
)


def _freeze(pid: int) -> int:
    os.kill(pid, signal.SIGSTOP)
    return pid


def test_out_of_memory_then_time_limit(
    clip_by_clip_config: Callable[..., Path],
    results_db: str,
    source_day: list[str],
    tag: str,
    capfd: pytest.CaptureFixture,
) -> None:
    day_dir = staging_day(tag)
    # slurmstepd reads slurm.conf at each launch: the file must carry the setting.
    assert "JobAcctGatherParams=OverMemoryKill" in Path("/etc/slurm/slurm.conf").read_text(), (
        "the bed's slurm.conf predates OverMemoryKill: run hpc/devcluster/provision.sh configure"
    )

    # 1. 250 MB is less than WhisperX needs: the sampler kills the shard.
    run = run_day(load_dag(clip_by_clip_config(resources={"audio": {"mem": "250M"}})))
    log = "".join(capfd.readouterr())
    assert run.tasks["audio"] == "failed", run.tasks
    assert (
        "OUT_OF_MEMORY: the job used more memory than it asked for (sbatch --mem; "
        "raise resources.<step>.mem" in log
    ), log[-4000:]
    assert "exceeded memory limit" in log  # the job log's tail, in the task's message

    # 2. Memory raised, time limit 1 minute; the shard hangs after its first clip.
    hung = Background(
        lambda: result_lines(day_dir) and shard_pids(str(day_dir.parent)),
        lambda pids: [_freeze(pid) for pid in pids],
        poll_s=0.05,
    )
    run = run_day(load_dag(clip_by_clip_config(resources={"audio": {"time": "1"}})))
    hung.result()
    log = "".join(capfd.readouterr())
    assert run.tasks["audio"] == "failed", run.tasks
    assert (
        "TIMEOUT exit=" in log
        and "TIMEOUT: the job hit its time limit (sbatch --time; raise resources.<step>.time" in log
    ), log[-4000:]
    assert "DUE TO TIME LIMIT" in log  # slurmstepd's line at the end of the job log
    done_before = {line["clip_id"] for line in result_lines(day_dir)}
    assert done_before

    # 3. The retry with the default limits resumes after the finished clip(s).
    run = run_day(load_dag(clip_by_clip_config()))
    log = "".join(capfd.readouterr())
    assert run.state == "success", run.tasks
    assert f"{len(done_before)} already done" in log
    assert_recorded_once(results_db, source_day)
    per_clip = collections.Counter(line["clip_id"] for line in result_lines(day_dir))
    assert per_clip == {f"{DAY}/{n}": 1 for n in source_day}
