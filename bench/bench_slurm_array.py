"""Watch a real SLURM array of 400+ indices with the real operator and trigger, and measure
the watching (not the work: the job script is trivial).

The ``SlurmSubmitOperator`` submits an array of N indices (default 400; 1 CPU and 50 MB each)
on the test bed, then its ``SlurmJobTrigger`` (rebuilt from its serialized form, as the
triggerer does) polls until every index ended. 5 % of the indices (shard % 20 == 7) fail the
first time. Measured per poll: sacct and squeue calls (must be one sacct and at most one
squeue), bytes SLURM returned, seconds. Then the verdict (a failure naming the failed
indices), a second try of the task that must resubmit exactly those indices, its verdict,
and the size of the task log (everything the operator, trigger and hooks logged, captured
from a child process as Airflow would show it).

    python bench/bench_slurm_array.py                 # 400 indices, ~10 min on the 2-core bed
    python bench/bench_slurm_array.py --indices 420 --max-array-size 200   # split in 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from airflow.sdk.exceptions import AirflowException, TaskDeferred

import bed  # sets up Airflow's environment: import first
from hpc_pipeline.config import PipelineConfig, SlurmResources
from hpc_pipeline.hooks.slurm import SlurmHook
from hpc_pipeline.operators.slurm import SlurmSubmitOperator
from hpc_pipeline.slurm.arrays import array_chunks, index_spec
from hpc_pipeline.slurm.jobs import SiteLimits
from hpc_pipeline.triggers.slurm import SlurmJobTrigger

SCRIPT = """#!/bin/bash
set -u
shard=$((SLURM_ARRAY_TASK_ID + ARRAY_INDEX_OFFSET))
echo "shard $shard on $(hostname -s)"
if [ $((shard % 20)) = 7 ] && [ ! -e "$MARKS/$shard" ]; then
  touch "$MARKS/$shard"; echo "shard $shard fails this time" >&2; exit 3
fi
"""


class Ti:
    """What the operator needs of a task instance here: somewhere to push its XCom."""

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


class Meter:
    """Counts the SLURM commands, bytes and seconds of every trigger poll (``query``)."""

    def __init__(self) -> None:
        self.polls: list[dict[str, Any]] = []
        self.submits: list[str] = []
        self._current: dict[str, Any] | None = None

    def install(self) -> None:
        run, query, submit = SlurmHook.run, SlurmHook.query, SlurmHook.submit
        meter = self

        def metered_run(hook: SlurmHook, argv: list[str], timeout: float | None = None) -> Any:
            rc, out, err = run(hook, argv, timeout)
            if meter._current is not None:
                meter._current[argv[0]] = meter._current.get(argv[0], 0) + 1
                meter._current["bytes"] += len(out.encode()) + len(err.encode())
            return rc, out, err

        def metered_query(
            hook: SlurmHook, job_ids: list[str], array_size: int | None = None
        ) -> Any:
            meter._current = {"bytes": 0}
            start = time.perf_counter()
            try:
                jobs = query(hook, job_ids, array_size)
                meter._current["rows"] = len(jobs)
                return jobs
            finally:
                meter._current["seconds"] = round(time.perf_counter() - start, 3)
                meter._current["at"] = round(time.monotonic(), 1)
                meter.polls.append(meter._current)
                meter._current = None

        def recorded_submit(hook: SlurmHook, script: str, **kw: Any) -> str:
            meter.submits.append(kw.get("array") or "")
            return submit(hook, script, **kw)

        SlurmHook.run = metered_run  # type: ignore[method-assign]
        SlurmHook.query = metered_query  # type: ignore[method-assign]
        SlurmHook.submit = recorded_submit  # type: ignore[method-assign]


def attempt(op: SlurmSubmitOperator, meter: Meter) -> dict[str, Any]:
    """One try of the task: execute (submit) → deferred trigger → execute_complete."""
    ti = Ti()
    submits_before = len(meter.submits)
    start = time.perf_counter()
    try:
        op.execute({"ti": ti})
        raise RuntimeError("the operator did not defer")
    except TaskDeferred as deferred:
        _, kwargs = deferred.trigger.serialize()  # what the triggerer rebuilds it from
        trigger = SlurmJobTrigger(**kwargs)
    submitted_s = time.perf_counter() - start
    polls_before = len(meter.polls)

    async def first_event() -> dict[str, Any]:
        async for event in trigger.run():
            return event.payload
        raise RuntimeError("the trigger ended without an event")

    payload = asyncio.run(first_event())
    watched_s = time.perf_counter() - start - submitted_s
    outcome: dict[str, Any] = {
        "submitted_arrays": meter.submits[submits_before:],
        "job_ids": ti.xcom["slurm_job"]["job_ids"],
        "submit_s": round(submitted_s, 2),
        "watch_s": round(watched_s, 1),
        "polls": meter.polls[polls_before:],
        "event_status": payload["status"],
        "event_bytes": len(json.dumps(payload)),
    }
    try:
        result = op.execute_complete({"ti": ti}, payload)
        outcome.update(verdict="success", counts=result["counts"])
    except AirflowException as exc:
        message = str(exc)
        failed = payload["failed_indices"]
        outcome.update(
            verdict="failed",
            failed_indices=failed,
            message_bytes=len(message),
            message_head=message.splitlines()[0][:300],
        )
    return outcome


def drive(args: argparse.Namespace) -> None:
    """The child: everything it logs is the task log."""
    meter = Meter()
    meter.install()
    bed.ssh_connection()
    config = PipelineConfig()
    token = uuid.uuid4().hex[:6]
    with SlurmHook("hpc_ssh") as hook:
        base = hook.resolve(f"audio-pipeline-bench{bed.NS}/slurm-array/{token}")
        hook.makedirs(f"{base}/marks")
        hook.write_text(f"{base}/array.sh", SCRIPT, 0o755)
        limits = hook.site_limits()

    def operator() -> SlurmSubmitOperator:
        return SlurmSubmitOperator(
            task_id="audio",
            ssh_conn_id="hpc_ssh",
            script=f"{base}/array.sh",
            job_name=f"bench{bed.NS}-audio-{token}",
            array_size=str(args.indices),
            resources=SlurmResources(partition="cpu", time="2", mem="50M", cpus_per_task=1),
            env={"MARKS": f"{base}/marks"},
            log_dir=f"{base}/logs",
            poll_interval=config.poll_interval_s,
            max_poll_interval=config.max_poll_interval_s,
            max_array_size=args.max_array_size,
        )

    first = attempt(operator(), meter)
    second = attempt(operator(), meter)  # Airflow's retry: a new try of the same task
    expected_failed = [i for i in range(args.indices) if i % 20 == 7]
    with SlurmHook("hpc_ssh") as hook:
        logs = int(hook.run(["bash", "-c", 'ls "$1" | wc -l', "_", f"{base}/logs"])[1])
        hook.run(["rm", "-rf", "--", base])
    Path(args.out).write_text(
        json.dumps(
            {
                "site_limits": {
                    "MaxArraySize": limits.max_array_size,
                    "MaxJobCount": limits.max_job_count,
                },
                "max_array_size_override": args.max_array_size,
                "expected_failed": expected_failed,
                "job_logs": logs,
                "first": first,
                "retry": second,
                "poll_interval_s": [config.poll_interval_s, config.max_poll_interval_s],
            }
        )
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--indices", type=int, default=400)
    p.add_argument(
        "--max-array-size",
        type=int,
        default=None,
        help="emulate a smaller site MaxArraySize (splits the array)",
    )
    p.add_argument("--json", default="slurm_array.json")
    p.add_argument("--drive", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.drive:
        drive(args)
        return
    out = Path(f"/tmp/bench_slurm_array{bed.NS}.partial.json")
    log = Path(f"/tmp/bench_slurm_array{bed.NS}.task.log")
    argv = [sys.executable, __file__, "--drive", "--indices", str(args.indices), "--out", str(out)]
    if args.max_array_size:
        argv += ["--max-array-size", str(args.max_array_size)]
    start = time.perf_counter()
    with open(log, "w") as fh:
        subprocess.run(argv, stdout=fh, stderr=subprocess.STDOUT, check=True)
    wall = time.perf_counter() - start
    doc = json.loads(out.read_text())
    out.unlink()
    text = log.read_text()
    doc["task_log"] = {"bytes": len(text.encode()), "lines": text.count("\n"), "path": str(log)}
    first, retry = doc["first"], doc["retry"]
    limits = SiteLimits(
        min(doc["site_limits"]["MaxArraySize"], args.max_array_size or 10**9),
        doc["site_limits"]["MaxJobCount"],
    )
    expected_retry = [
        index_spec([i - offset for i in doc["expected_failed"] if offset <= i < offset + n])
        for offset, n in array_chunks(args.indices, limits)
        if any(offset <= i < offset + n for i in doc["expected_failed"])
    ]
    checks = {
        "one_sacct_at_most_one_squeue_per_poll": all(
            p.get("sacct") == 1 and p.get("squeue", 0) <= 1 for p in first["polls"] + retry["polls"]
        ),
        "first_try_failed_on_exactly_the_5_percent": first["verdict"] == "failed"
        and first["failed_indices"] == doc["expected_failed"],
        "retry_resubmitted_exactly_those": retry["submitted_arrays"] == expected_retry,
        "retry_succeeded_over_every_index": retry["verdict"] == "success"
        and retry["counts"] == {"COMPLETED": args.indices},
    }
    polls = first["polls"] + retry["polls"]
    summary = {
        "indices": args.indices,
        "wall_s": round(wall, 1),
        "polls": len(polls),
        "bytes_per_poll_max": max(p["bytes"] for p in polls),
        "bytes_per_poll_mean": round(sum(p["bytes"] for p in polls) / len(polls)),
        "seconds_per_poll_max": max(p["seconds"] for p in polls),
        "seconds_per_poll_mean": round(sum(p["seconds"] for p in polls) / len(polls), 3),
        "squeue_calls": sum(p.get("squeue", 0) for p in polls),
        "task_log_bytes": doc["task_log"]["bytes"],
        "checks": checks,
    }
    print(json.dumps(summary, indent=1))
    bed.write_json(
        args.json,
        {
            "bench": "slurm_array",
            "command": "python bench/bench_slurm_array.py "
            f"--indices {args.indices}"
            + (f" --max-array-size {args.max_array_size}" if args.max_array_size else ""),
            "summary": summary,
            **doc,
        },
    )
    if not all(checks.values()):
        sys.exit(f"checks failed: {[k for k, v in checks.items() if not v]}")


if __name__ == "__main__":
    main()
