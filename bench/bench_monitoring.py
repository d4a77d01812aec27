"""Latency of the status page and the monitoring API for a year of days, through a real
Airflow api-server (the plugin mounted at /audio-pipeline, auth on, results DB in PostgreSQL).

    .venv/bin/python bench/bench_monitoring.py --json bench/results/monitoring_latency.json

Seeds a fresh results DB through ``ResultsDbHook.record_day`` (the pipeline's own load path):
``--days`` days back from yesterday (about 3 % never run, 5 % incomplete, 12 % partial, the
rest complete) of ``--clips-per-day`` clips each, a latest day of ``--big-day-clips`` clips,
and per day a master job, a transfer job and an audio array with queue waits. Then starts an
api-server alone (scripts/airflow_stack.sh, AIRFLOW_COMPONENTS=api-server, one worker) and
times each request ``--requests`` times after a warm-up, plus the page in headless Chromium
until its five charts are drawn. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import random
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import bed  # noqa: F401  (Airflow's environment first: the plugin imports by name)

REPO = Path(__file__).resolve().parents[1]
REASONS = ("corrupt", "empty", "silent", "not_audio", "too_long")
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


def psql(sql: str) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-qc", sql], check=True)


def synthetic_day(day: dt.date, clips: int, rng: random.Random) -> Any:
    """One day's load as the DAG would record it: a manifest, clip results and SLURM jobs."""
    from audio_hpc.contract import Clip, ClipResult, Manifest, Shard
    from hpc_pipeline.hooks.results_db import DayLoad, JobRecord

    iso = day.isoformat()
    roll = rng.random()
    kind = "incomplete" if roll < 0.05 else "partial" if roll < 0.17 else "complete"
    names = [f"cam{i % 7}/clip_{i:06d}.m4a" for i in range(clips)]
    manifest = Manifest(
        date=iso,
        plan_id="bench",
        source="/src",
        listed=clips,
        shards=[
            Shard(s, [Clip(f"{iso}/{n}", n, f"/src/{iso}/{n}", 1000) for n in names[s::20]])
            for s in range(20)
        ],
    )
    done = names[: int(clips * 0.97)] if kind == "incomplete" else names
    finished = f"{(day + dt.timedelta(days=1)).isoformat()}T03:00:00+00:00"
    results = []
    for i, name in enumerate(done):
        failed = kind == "partial" and i % 25 == 0
        results.append(
            ClipResult(
                clip_id=f"{iso}/{name}",
                date=iso,
                status="failed" if failed else "ok",
                engine="torch",
                model="large-v3",
                language="en",
                duration_s=10 + (i * 7919) % 50,
                text="" if failed else f"synthetic transcript {i} of {iso}",
                segments=[] if failed else [{"start": 0.0, "end": 4.0, "text": f"segment {i}"}],
                error_kind=REASONS[(i // 25 + day.day) % len(REASONS)] if failed else "",
                error="ffmpeg: invalid data" if failed else "",
                job_id=str(day.toordinal()),
                array_index=i % 20,
                node="gpu01",
                finished_at=finished,
            )
        )
    submit = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0, 0, 5))

    def job(step: str, job_id: int, index: int, wait_s: int, run_s: float, gpus: int) -> JobRecord:
        return JobRecord(
            step,
            str(job_id),
            index,
            "COMPLETED",
            "0:0",
            run_s,
            "gpu01",
            gpus,
            submitted_at=submit.isoformat(timespec="seconds"),
            started_at=(submit + dt.timedelta(seconds=wait_s)).isoformat(timespec="seconds"),
        )

    base = day.toordinal() * 10
    shard_s = sum(r.duration_s for r in results) / 20 / rng.uniform(25, 40)  # 25-40x real time
    jobs = [
        job("master", base, -1, rng.randint(1, 60), 30.0, 0),
        job("transfer", base + 1, -1, rng.randint(1, 300), 600.0, 0),
    ]
    jobs += [job("audio", base + 2, i, rng.randint(10, 3600), shard_s, 1) for i in range(20)]
    return DayLoad(
        day=iso,
        plan_id="bench",
        dag_run_id=f"scheduled__{iso}",
        manifest=manifest,
        results=results,
        jobs=jobs,
    )


def seed(hook: Any, days: int, clips_per_day: int, big_day_clips: int) -> dict[str, Any]:
    rng = random.Random(20261202)
    yesterday = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
    started, recorded = time.monotonic(), 0
    for back in range(days, 0, -1):
        day = yesterday - dt.timedelta(days=back - 1)
        if back > 1 and rng.random() < 0.03:
            continue  # a day that never ran
        hook.record_day(synthetic_day(day, big_day_clips if back == 1 else clips_per_day, rng))
        recorded += 1
    return {
        "days": days,
        "days_recorded": recorded,
        "clips_per_day": clips_per_day,
        "big_day": yesterday.isoformat(),
        "big_day_clips": big_day_clips,
        "seed_s": round(time.monotonic() - started, 1),
    }


class Client:
    """One keep-alive HTTP connection with an Airflow JWT, like a browser tab."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        body = json.dumps({"username": "admin", "password": "admin"})
        self.conn.request("POST", "/auth/token", body, {"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        self.token = json.loads(resp.read())["access_token"]

    def get(self, path: str) -> tuple[int, bytes, float]:
        start = time.perf_counter()
        self.conn.request(
            "GET",
            path,
            headers={"Authorization": f"Bearer {self.token}", "Cookie": f"_token={self.token}"},
        )
        resp = self.conn.getresponse()
        body = resp.read()
        return resp.status, body, (time.perf_counter() - start) * 1000


def timings(client: Client, path: str, n: int) -> dict[str, Any]:
    status, body, _ = client.get(path)  # warm-up (first connection to the DB, caches)
    if status != 200:
        raise RuntimeError(f"GET {path}: HTTP {status}: {body[:300]!r}")
    ms = [client.get(path)[2] for _ in range(n)]
    return {
        "path": path,
        "bytes": len(body),
        "n": n,
        "p50_ms": round(statistics.median(ms), 1),
        "p95_ms": round(sorted(ms)[max(0, int(n * 0.95) - 1)], 1),
        "max_ms": round(max(ms), 1),
    }


def browser_ms(port: int, n: int) -> dict[str, Any]:
    """Navigation start to the five charts drawn, as the page itself measures it
    (``performance.now()`` after the last ``setOption``), logged in through the UI."""
    from playwright.sync_api import sync_playwright

    base = f"http://127.0.0.1:{port}"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(base + "/audio-pipeline/")  # redirected to the login page
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill("admin")
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(lambda url: "/auth/login" not in url, timeout=30_000)
        ms, days_ms = [], []
        for _ in range(n + 1):
            page.goto(base + "/audio-pipeline/")
            page.wait_for_selector("body[data-ready='1']", timeout=30_000)
            timings = page.evaluate("() => audioStatus.timings")
            ms.append(timings["chartsDrawn"])
            days_ms.append(timings["daysLoaded"])
        browser.close()
    ms, days_ms = ms[1:], days_ms[1:]  # the first one loads echarts.min.js into the cache
    return {
        "path": "/audio-pipeline/ (browser: navigation start to 5 charts drawn)",
        "n": n,
        "p50_ms": round(statistics.median(ms), 1),
        "max_ms": round(max(ms), 1),
        "days_loaded_p50_ms": round(statistics.median(days_ms), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--clips-per-day", type=int, default=200)
    parser.add_argument("--big-day-clips", type=int, default=20000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--port", type=int, default=int(os.environ.get("AUDIO_BENCH_PORT", 8093)))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    db = "bench_monitoring" + os.environ.get("AUDIO_TEST_NS", "")
    psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    psql(f"CREATE DATABASE {db} OWNER audio")
    os.environ["AIRFLOW_CONN_AUDIO_RESULTS_DB"] = json.dumps(
        {
            "conn_type": "postgres",
            "host": "127.0.0.1",
            "port": 5432,
            "login": "audio",
            "password": "audio",
            "schema": db,
        }
    )
    from hpc_pipeline.hooks.results_db import ResultsDbHook

    hook = ResultsDbHook("audio_results_db")
    hook.migrate()
    seeded = seed(hook, args.days, args.clips_per_day, args.big_day_clips)
    print(f"seeded {seeded}", flush=True)

    home = REPO / ".airflow" / "bench-monitoring"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW_PORT=str(args.port),
        RESULTS_DB=db,
        AIRFLOW_DB="airflow_bench_monitoring" + os.environ.get("AUDIO_TEST_NS", ""),
        AIRFLOW_COMPONENTS="api-server",
        AIRFLOW__API__WORKERS="1",
    )
    stack = str(REPO / "scripts" / "airflow_stack.sh")
    subprocess.run(["bash", stack, "start"], env=env, check=True)
    try:
        client = Client(args.port)
        big = seeded["big_day"]
        year_ago = (dt.date.fromisoformat(big) - dt.timedelta(days=args.days - 1)).isoformat()
        clip = json.loads(client.get(f"/audio-pipeline/api/days/{big}/clips?status=ok&limit=1")[1])
        paths = [
            "/audio-pipeline/",
            "/audio-pipeline/api/days",
            f"/audio-pipeline/api/days?start={year_ago}&end={big}",
            f"/audio-pipeline/api/days/{big}",
            f"/audio-pipeline/api/days/{big}/clips?status=failed&limit=100",
            f"/audio-pipeline/api/days/{big}/clips?limit=100&after={clip['clips'][0]['clip_id']}",
            f"/audio-pipeline/api/clips/{clip['clips'][0]['clip_id']}/transcript",
            "/audio-pipeline/api/health?window=30",
            "/audio-pipeline/metrics",
        ]
        results = [timings(client, p, args.requests) for p in paths]
        results.append(browser_ms(args.port, max(3, args.requests // 6)))
    finally:
        subprocess.run(["bash", stack, "stop"], env=env, check=False)
        psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    report = {
        "bench": "monitoring_latency",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {os.cpu_count()} cores, shared",
        "load_average_1m_at_end": os.getloadavg()[0],
        "api_workers": 1,
        "seeded": seeded,
        "target_ms": 300,
        "results": results,
    }
    for r in results:
        print(
            f"{r['p50_ms']:8.1f} ms p50 {r.get('p95_ms', ''):>8} p95 {r['max_ms']:8.1f} max  {r['path']}"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
