"""Plan a big day the way the DAG does, on the real test bed, and time each step.

For each day size (default 20,000 and 100,000 clips at the source):
  write_request   the done-list from PostgreSQL (``ResultsDbHook.done_clips``) → request.json
                  over SFTP (``day.write_request``)
  master_plan     ``audio_hpc.plan`` of a deployed release, run as the submit user:
                  list the source day, drop what is done (DB done-list + result lines already
                  on staging), shard, write manifest.json; wall time and peak RSS
  read_plan       manifest.json back over SFTP and parsed (``day.read_plan``)
Scenarios: ``mostly_done`` (90 % of the day in the DB and its result lines, ~10 segments
each, on staging under an earlier plan; the rest to plan) and ``fresh`` (nothing done) at
several shard sizes, to show memory does not grow with the number of shards.

    python bench/bench_planner.py            # 20k and 100k, JSON in bench/results/
    python bench/bench_planner.py --clips 20000 --shard-sizes 50
"""

from __future__ import annotations

import argparse
import dataclasses
import posixpath
import resource
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import bed  # sets up Airflow's environment: import first
from audio_hpc.contract import Clip, Manifest, Shard, shard_results_name
from hpc_pipeline import steps
from hpc_pipeline.config import PipelineConfig
from hpc_pipeline.hooks.results_db import DayLoad, ResultsDbHook
from hpc_pipeline.hooks.slurm import SlurmHook
from hpc_pipeline.release import deploy_release

SOURCE_ROOT = Path(f"/srv/audio-source-bench{bed.NS}")
DATES = {20000: "2026-10-01", 100000: "2026-10-02"}


def make_source(date: str, clips: int) -> Path:
    """``clips`` small files (plus a non-audio file per folder), made once and reused."""
    day = SOURCE_ROOT / date
    marker = day / f".complete-{clips}"
    if marker.exists():
        return day
    shutil.rmtree(day, ignore_errors=True)
    for i in range(clips):
        path = day / bed.clip_path(i)
        if i % 100 == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
            (path.parent / "notes.txt").write_text("not a clip")
        path.write_bytes(b"\0" * 16)
    marker.touch()
    subprocess.run(["chmod", "-R", "a+rX", str(SOURCE_ROOT)], check=True)
    return day


def stage_old_results(staging_day: str, date: str, done: list[int], user: str) -> int:
    """Result lines of an earlier plan for the ``done`` clips, as the audio jobs left them
    (50 clips per shard file); returns their bytes. Written here, owned by the submit user."""
    out = Path(staging_day) / "results" / "earlier-plan"
    out.mkdir(parents=True, exist_ok=True)
    size = 0
    for start in range(0, len(done), 50):
        lines = "".join(bed.result_line(date, i).to_line() for i in done[start : start + 50])
        (out / shard_results_name(start // 50)).write_text(lines, encoding="utf-8")
        size += len(lines.encode())
    subprocess.run(["chown", "-R", f"{user}:{user}", str(Path(staging_day))], check=True)
    return size


def fill_db(db: ResultsDbHook, date: str, done: list[int]) -> float:
    """Record the done clips (their outcomes as the earlier plan loaded them); seconds."""
    results = [bed.result_line(date, i) for i in done]
    clips = [Clip(r.clip_id, r.clip_id.split("/", 1)[1], "", 16) for r in results]
    start = time.perf_counter()
    db.record_day(
        DayLoad(
            day=date,
            plan_id="earlier-plan",
            dag_run_id="bench",
            manifest=Manifest(
                date=date,
                plan_id="earlier-plan",
                source="bench",
                shards=[Shard(0, clips)],
                listed=len(clips),
            ),
            results=results,
        )
    )
    return time.perf_counter() - start


def run_planner(release: str, user: str, ctx: steps.DayContext, shard_size: int) -> dict[str, Any]:
    """The planner (``audio_hpc.plan``) as the submit user; wall seconds and peak RSS of the planner."""
    argv = [
        "runuser",
        "-u",
        user,
        "--",
        "env",
        f"PYTHONPATH={release}/src",
        "/opt/hpc-venv/bin/python",
        "-c",
        bed.PEAK_RSS_WRAPPER,
        "audio_hpc.plan",
        "--date",
        ctx.day,
        "--staging-root",
        ctx.staging_root,
        "--backend",
        "local",
        "--source-root",
        str(SOURCE_ROOT),
        "--shard-size",
        str(shard_size),
    ]
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"master_plan failed ({proc.returncode}): {proc.stderr}")
    return {
        "seconds": round(wall, 3),
        "peak_rss_mib": bed.peak_rss_mib(proc.stderr),
        "output": proc.stdout.strip(),
    }


def scenario(
    ssh: SlurmHook,
    release: str,
    user: str,
    config: PipelineConfig,
    date: str,
    clips: int,
    done_fraction: float,
    shard_size: int,
) -> dict[str, Any]:
    with bed.results_db("planner"):
        db = ResultsDbHook("audio_results_db")
        db.migrate()
        ctx = steps.resolve_day(
            ssh,
            config,
            date_param=date,
            reprocess="none",
            logical_date=None,
            run_id=f"bench__{uuid.uuid4().hex}",
        )
        ssh.run(["rm", "-rf", "--", ctx.day_dir])
        # every 10th clip is new, the rest were recorded by an earlier run
        done = [i for i in range(clips) if i % 10 != 0] if done_fraction else []
        setup = {
            "db_fill_s": round(fill_db(db, date, done), 2) if done else 0,
            "staged_result_bytes": stage_old_results(ctx.day_dir, date, done, user) if done else 0,
        }
        t0 = time.perf_counter()
        steps.write_request(ssh, db, dataclasses.replace(config, shard_size=shard_size), ctx)
        t1 = time.perf_counter()
        planner = run_planner(release, user, ctx, shard_size)
        t2 = time.perf_counter()
        plan = steps.read_plan(ssh, ctx)
        t3 = time.perf_counter()
        sizes = {
            name: ssh.sftp().stat(posixpath.join(ctx.day_dir, name)).st_size
            for name in ("request.json", "manifest.json")
        }
        ssh.run(["rm", "-rf", "--", ctx.day_dir])
    expected_todo = clips - len(done)
    assert plan["clips"] == expected_todo and plan["listed"] == clips, plan
    assert plan["shards"] == -(-expected_todo // shard_size), plan
    return {
        "day_clips": clips,
        "done_in_db": len(done),
        "shard_size": shard_size,
        "planned_clips": plan["clips"],
        "listed": plan["listed"],
        "skipped": plan["skipped"],
        "shards": plan["shards"],
        "write_request_s": round(t1 - t0, 3),
        "master_plan_s": planner["seconds"],
        "master_plan_peak_rss_mib": planner["peak_rss_mib"],
        "read_plan_s": round(t3 - t2, 3),
        "total_s": round(t3 - t0, 3),
        "request_bytes": sizes["request.json"],
        "manifest_bytes": sizes["manifest.json"],
        "setup": setup,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", default="20000,100000")
    p.add_argument(
        "--shard-sizes",
        default="1000,50,10,1",
        help="fresh-day shard sizes (memory vs number of shards)",
    )
    p.add_argument("--json", default="planner.json")
    args = p.parse_args()
    facts = bed.ssh_connection()
    user = facts["DEVCLUSTER_USER"]
    rows = []
    with SlurmHook("hpc_ssh") as ssh:
        root = f"audio-pipeline-bench{bed.NS}"
        config = PipelineConfig(
            remote_root=root, staging_root=f"{root}/staging", source_root=str(SOURCE_ROOT)
        )
        release = deploy_release(
            ssh, bed.REPO / "hpc", posixpath.join(ssh.resolve(root), "releases")
        )
        for clips in (int(c) for c in args.clips.split(",")):
            date = DATES.get(clips, "2026-10-03")
            start = time.perf_counter()
            make_source(date, clips)
            print(f"source day of {clips} files ready in {time.perf_counter() - start:.1f} s")
            runs = [("mostly_done", 0.9, 50)] + [
                ("fresh", 0.0, int(s)) for s in args.shard_sizes.split(",")
            ]
            for name, fraction, shard_size in runs:
                row = {
                    "scenario": name,
                    **scenario(ssh, release, user, config, date, clips, fraction, shard_size),
                }
                print(
                    f"{clips:>7} {name:<12} shard={shard_size:<5} shards={row['shards']:<6} "
                    f"request {row['write_request_s']:.2f}s  plan {row['master_plan_s']:.2f}s "
                    f"(peak {row['master_plan_peak_rss_mib']:.0f} MiB)  read {row['read_plan_s']:.2f}s"
                    f"  total {row['total_s']:.2f}s  manifest {row['manifest_bytes'] / 1e6:.1f} MB",
                    flush=True,
                )
                rows.append(row)
    bed.write_json(
        args.json,
        {
            "bench": "planner",
            "command": "python bench/bench_planner.py "
            f"--clips {args.clips} --shard-sizes {args.shard_sizes}",
            "target": "20,000 files planned in < 10 s; memory flat in shards",
            "runs": rows,
            "bench_peak_rss_mib": round(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
            ),
        },
    )


if __name__ == "__main__":
    main()
