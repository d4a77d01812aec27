"""Record a big day's results the way the DAG's ``record_results`` task does, and time it.

A day of N clips (default 20,000 and 100,000) is synthesized with the contract module: one
result line per clip (~10 segments each, 2 % failed), 50 clips per shard file, plus the
day's manifest.json, placed on the test bed's staging (owned by the submit user, so the
SFTP reads are real). Then ``day.record_results`` runs in a child process (its peak RSS is
the task's): SFTP + parse + COPY + upsert into a fresh PostgreSQL results DB. It runs twice:
the second run must change nothing (row counts and a checksum of every table) and should
take no longer.

    python bench/bench_ingest.py                      # 20k and 100k, JSON in bench/results/
    python bench/bench_ingest.py --clips 20000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

import bed  # sets up Airflow's environment: import first
from audio_hpc.contract import (
    Clip,
    Manifest,
    Shard,
    day_dir,
    results_dir,
    shard_results_name,
    write_atomic,
)
from hpc_pipeline import steps
from hpc_pipeline.hooks.slurm import SlurmHook

DATES = {20000: "2026-09-01", 100000: "2026-09-02"}
SHARD = 50
# What "nothing changed" means: every row of every table, recorded_at included (an upsert
# that rewrites a row bumps it), except the day row's, which each load refreshes.
CHECKSUMS = {
    "audio_clips": "SELECT md5(string_agg(t::text, '|' ORDER BY clip_id)) FROM audio_clips t",
    "transcripts": "SELECT md5(string_agg(t::text, '|' ORDER BY clip_id)) FROM transcripts t",
    "audio_days": "SELECT md5(string_agg((day, clips_listed, clips_planned, clips_ok, clips_failed,"
    " clips_missing, failed_by_reason, audio_seconds, status)::text, '|')) FROM audio_days",
}


def stage_day(staging_root: str, date: str, plan_id: str, clips: int, user: str) -> int:
    """Write the day's manifest and result lines on staging; return the result bytes."""
    all_clips = [
        Clip(
            clip_id=f"{date}/{bed.clip_path(i)}",
            name=bed.clip_path(i).replace("/", "__"),
            source_path=f"/src/{date}/{bed.clip_path(i)}",
            size=1_000_000,
        )
        for i in range(clips)
    ]
    shards = [
        Shard(index=s, clips=all_clips[s * SHARD : (s + 1) * SHARD])
        for s in range(-(-clips // SHARD))
    ]
    root = Path(day_dir(staging_root, date))
    subprocess.run(["rm", "-rf", "--", str(root)], check=True)
    write_atomic(
        root / "manifest.json",
        Manifest(date=date, plan_id=plan_id, source="bench", shards=shards, listed=clips).to_json(),
    )
    out = Path(results_dir(staging_root, date, plan_id))
    out.mkdir(parents=True)
    size = 0
    for shard in shards:
        lines = "".join(
            bed.result_line(
                date, i, plan_id=plan_id, status="failed" if i % 50 == 7 else "ok"
            ).to_line()
            for i in range(shard.index * SHARD, shard.index * SHARD + len(shard.clips))
        )
        (out / shard_results_name(shard.index)).write_text(lines, encoding="utf-8")
        size += len(lines.encode())
    subprocess.run(["chown", "-R", f"{user}:{user}", str(root)], check=True)
    return size


def _rss_kb() -> int:
    return int(
        next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmRSS:"))
    )


def child(args: argparse.Namespace) -> None:
    """One ``record_results`` as the task runs it; prints its numbers as JSON."""
    from hpc_pipeline.hooks.results_db import ResultsDbHook

    baseline = _rss_kb()
    ctx = steps.DayContext(
        day=args.date,
        plan_id=args.plan_id,
        reprocess="none",
        run_id="bench",
        staging_root=args.staging_root,
        day_dir=day_dir(args.staging_root, args.date),
        release_root="",
    )
    # Instrumentation only (the code paths are the task's): where the time goes.
    spent = {"manifest_sftp_s": 0.0, "fetch_results_s": 0.0, "parse_s": 0.0}
    read_text, iter_tree, parse = SlurmHook.read_text, SlurmHook.iter_tree, steps.iter_result_lines

    def timed_read(self: SlurmHook, path: str) -> str:
        start = time.perf_counter()
        try:
            return read_text(self, path)
        finally:
            spent["manifest_sftp_s"] += time.perf_counter() - start

    def timed_iter(gen: Any, key: str) -> Any:
        while True:
            start = time.perf_counter()
            try:
                item = next(gen)
            except StopIteration:
                return
            finally:
                spent[key] += time.perf_counter() - start
            yield item

    SlurmHook.read_text = timed_read  # type: ignore[method-assign]
    SlurmHook.iter_tree = lambda self, *a: timed_iter(iter_tree(self, *a), "fetch_results_s")  # type: ignore[method-assign]
    steps.iter_result_lines = lambda text: timed_iter(parse(text), "parse_s")  # type: ignore[assignment]
    db = ResultsDbHook("audio_results_db")
    start = time.perf_counter()
    with SlurmHook("hpc_ssh") as ssh:
        summary = steps.record_results(ssh, db, ctx, {"master": [], "transfer": [], "audio": []})
    total = time.perf_counter() - start
    spent["copy_upsert_s"] = total - sum(spent.values())
    print(
        json.dumps(
            {
                "total_s": round(total, 2),
                **{k: round(v, 2) for k, v in spent.items()},
                "rss_before_mib": round(baseline / 1024, 1),
                "summary": {
                    k: summary[k]
                    for k in (
                        "status",
                        "clips_ok",
                        "clips_failed",
                        "clips_missing",
                        "clips_planned",
                    )
                },
            }
        )
    )


def record_once(date: str, plan_id: str, staging_root: str) -> dict[str, Any]:
    argv = [
        sys.executable,
        "-c",
        bed.PEAK_RSS_WRAPPER,
        __file__,
        "--child",
        "--date",
        date,
        "--plan-id",
        plan_id,
        "--staging-root",
        staging_root,
    ]
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"record_results failed: {proc.stderr[-3000:]}")
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    doc["process_wall_s"] = round(wall, 2)
    doc["process_peak_rss_mib"] = bed.peak_rss_mib(proc.stderr)
    return doc


def table_state(dsn: str) -> dict[str, Any]:
    with psycopg.connect(dsn) as conn:
        counts = {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("audio_clips", "transcripts", "audio_days")
        }
        sums = {t: conn.execute(sql).fetchone()[0] for t, sql in CHECKSUMS.items()}
        segments = conn.execute(
            "SELECT sum(jsonb_array_length(segments)) FROM transcripts"
        ).fetchone()[0]
    return {"rows": counts, "segments": segments, "checksums": sums}


def run(clips: int, staging_root: str, user: str) -> dict[str, Any]:
    date = DATES.get(clips, "2026-09-03")
    plan_id = uuid.uuid4().hex[:10]
    start = time.perf_counter()
    size = stage_day(staging_root, date, plan_id, clips, user)
    print(
        f"{clips} result lines ({size / 1e6:.1f} MB) staged in {time.perf_counter() - start:.1f} s",
        flush=True,
    )
    with bed.results_db("ingest") as dsn:
        from hpc_pipeline.hooks.results_db import ResultsDbHook

        ResultsDbHook("audio_results_db").migrate()
        first = record_once(date, plan_id, staging_root)
        state = table_state(dsn)
        again = record_once(date, plan_id, staging_root)
        unchanged = table_state(dsn) == state
    subprocess.run(["rm", "-rf", "--", day_dir(staging_root, date)], check=True)
    failed = sum(1 for i in range(clips) if i % 50 == 7)
    assert first["summary"] == {
        "status": "partial",
        "clips_ok": clips - failed,
        "clips_failed": failed,
        "clips_missing": 0,
        "clips_planned": clips,
    }, first["summary"]
    assert state["rows"] == {"audio_clips": clips, "transcripts": clips - failed, "audio_days": 1}
    assert state["segments"] == 10 * (clips - failed)
    assert unchanged, "re-recording the same day changed rows"
    for label, doc in (("first", first), ("again", again)):
        print(
            f"{clips:>7} {label:<5} total {doc['total_s']:6.2f}s (manifest {doc['manifest_sftp_s']:.2f}s,"
            f" fetch {doc['fetch_results_s']:.2f}s, parse {doc['parse_s']:.2f}s, COPY+upsert "
            f"{doc['copy_upsert_s']:.2f}s)  {clips / doc['total_s']:,.0f} clips/s  "
            f"peak RSS {doc['process_peak_rss_mib']:.0f} MiB",
            flush=True,
        )
    return {
        "clips": clips,
        "result_bytes": size,
        "segments": state["segments"],
        "first": first,
        "again": again,
        "rows": state["rows"],
        "rerecord_unchanged": unchanged,
        "clips_per_s": round(clips / first["total_s"]),
        "rows_per_s": round((clips + state["rows"]["transcripts"]) / first["total_s"]),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", default="20000,100000")
    p.add_argument("--json", default="ingest.json")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--date", help=argparse.SUPPRESS)
    p.add_argument("--plan-id", help=argparse.SUPPRESS)
    p.add_argument("--staging-root", help=argparse.SUPPRESS)
    args = p.parse_args()
    facts = bed.ssh_connection()
    if args.child:
        child(args)
        return
    with SlurmHook("hpc_ssh") as ssh:
        staging_root = ssh.resolve(f"audio-pipeline-bench{bed.NS}/staging")
        ssh.makedirs(staging_root)  # owned by the submit user
    rows = [run(int(c), staging_root, facts["DEVCLUSTER_USER"]) for c in args.clips.split(",")]
    bed.write_json(
        args.json,
        {
            "bench": "ingest",
            "command": f"python bench/bench_ingest.py --clips {args.clips}",
            "target": "20,000 clips recorded in < 60 s and < 1 GiB; "
            "re-recording changes nothing and takes no longer",
            "runs": rows,
        },
    )


if __name__ == "__main__":
    main()
