"""A year of transcripts at full volume (365 days x 20,000 clips): load, API, search, export.

    .venv/bin/python bench/bench_year.py --json bench/results/year.json

1. ``--loaded-days`` days (default 3) of ``--clips-per-day`` synthetic clips go through
   ``ResultsDbHook.record_day`` (the pipeline's own COPY + upsert path), each timed.
   Transcripts are speech-like: 10-60 s clips at 2.6 words/s, Zipf-distributed words (about
   300 common English words at the head, 20,000 made-up words in the tail),
   recurring phrases ("climate change" in 1 % of clips), WhisperX-shaped segments of 6-20
   words with start/end times (no word timings: alignment is off on this site), 2 % failed.
2. The rest of the year is seeded by SQL that copies those loaded days' rows (days, clips,
   transcripts with their segments, SLURM jobs) to the other days with shifted days, clip ids
   and job ids, one transaction per day; the generated tsvector and every index are
   maintained by PostgreSQL as for a real insert. Then VACUUM ANALYZE (autovacuum's job on a
   live site). ``--deadline HH:MM`` (UTC) stops the seeding early: everything after is then
   measured at the scale reached, and the JSON says so.
3. One more day goes through ``record_day`` on the full database (the day load that counts).
4. An api-server alone (scripts/airflow_stack.sh, one worker) serves the monitoring app; each
   request is timed ``--requests`` times after a warm-up (p50/p95/max): /api/days for the
   year, a day's page, clip paging (first page, deep page), search (common word, rare word,
   phrase; ranked and newest-first), and the one-day Parquet export (and 7 days, for memory)
   while the api-server's RSS (process tree) is sampled.
5. Database size: total, per table, per day and per year.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import http.client
import io
import itertools
import json
import os
import platform
import random
import statistics
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bed  # noqa: F401  (Airflow's environment first: the plugin imports by name)

REPO = Path(__file__).resolve().parents[1]
# Spoken English, roughly most frequent first: the head of the Zipf distribution.
ENGLISH = """the i you and to a it that of is in we they this was so what know but like have
not on just yeah do be for he with there are all about one can think right go if or well people
get at no as my me she time would really because out then some up from now going how very had
good when more them your his an say our see mean were been could who which thing things want
work day little much also make other way year even back her lot did here two got need take
where come said over these new first something those years still too kind really into only
those many school long home money around family days week today life world children house
help part question government business another country company problem story place call
weather morning water city night music team market report budget health police water change
climate court community president state season food price street program student research
meeting project study car game history building energy church law party hospital film power
minute hour friend mother father number office police island river train doctor teacher
election island border village science data museum garden library market football television
""".split()
PHRASES = (("climate change", 0.01), ("supreme court", 0.002), ("machine learning", 0.003))
RARE_PER_DAY = (4, 6)  # the rare word: in this many of a day's transcripts (~1,800 a year)
TAIL_WORDS = 20000
WORDS_PER_S = 2.6


def rare_word(hook: Any, day: dt.date) -> str:
    """A made-up word in 4-6 of ``day``'s transcripts, the same for the same DB (the
    vocabulary's order depends on the process's string hashing, so it is read from the data)."""
    day_rows = (
        f"SELECT search FROM transcripts WHERE clip_id >= '{day}' "
        f"AND clip_id < '{day + dt.timedelta(days=1)}'"
    )
    ((word,),) = hook.get_records(
        """SELECT word FROM ts_stat(%s) WHERE ndoc BETWEEN %s AND %s AND word ~ '^[a-z]+$'
                AND word <> ALL(%s) ORDER BY word LIMIT 1""",
        (day_rows, *RARE_PER_DAY, ENGLISH),
    )
    return str(word)


def psql(sql: str, db: str = "postgres") -> str:
    return subprocess.run(
        ["runuser", "-u", "postgres", "--", "psql", "-qAtd", db, "-c", sql],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def vocabulary(rng: random.Random) -> list[str]:
    """English words first (most frequent), then made-up words of 2-4 syllables."""
    head = list(dict.fromkeys(ENGLISH))
    syllables = [c + v for c in "bdfgklmnprstvz" for v in ("a", "e", "i", "o", "u", "en", "ar")]
    tail: set[str] = set()
    while len(tail) < TAIL_WORDS:
        tail.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))))
    return head + sorted(tail, key=lambda w: rng.random())


class Speech:
    """Zipf-distributed words (s = 1.1) with recurring phrases, split into segments."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.words = vocabulary(rng)
        weights = [1 / (r + 1) ** 1.1 for r in range(len(self.words))]
        self.cum = list(itertools.accumulate(weights))

    def transcript(self, duration_s: float) -> tuple[str, list[dict[str, Any]]]:
        n = max(3, int(duration_s * WORDS_PER_S * self.rng.uniform(0.7, 1.2)))
        words = self.rng.choices(self.words, cum_weights=self.cum, k=n)
        for phrase, p in PHRASES:
            if self.rng.random() < p:
                at = self.rng.randrange(max(1, n - 2))
                words[at : at + 2] = phrase.split()
        segments, i, t = [], 0, self.rng.uniform(0, 1.5)
        per_word = duration_s * 0.9 / len(words)
        while i < len(words):
            k = self.rng.randint(6, 20)
            chunk = words[i : i + k]
            end = min(duration_s, t + len(chunk) * per_word)
            segments.append(
                {
                    "start": round(t, 3),
                    "end": round(end, 3),
                    "text": " " + " ".join(chunk).capitalize() + ".",
                }
            )
            t, i = end + self.rng.uniform(0, 0.2), i + k
        return " ".join(s["text"].strip() for s in segments), segments


def synthetic_day(day: dt.date, clips: int, speech: Speech, job_base: int) -> Any:
    """One day's load as the DAG records it: manifest, clip results, SLURM jobs."""
    from audio_hpc.contract import Clip, ClipResult, Manifest, Shard
    from hpc_pipeline.hooks.results_db import DayLoad, JobRecord

    iso, rng = day.isoformat(), speech.rng
    names = [f"cam{i % 7}/clip_{i:06d}.m4a" for i in range(clips)]
    shards = (clips + 999) // 1000
    manifest = Manifest(
        date=iso,
        plan_id="bench",
        source="/src",
        listed=clips,
        shards=[
            Shard(
                s,
                [
                    Clip(f"{iso}/{n}", n, f"/src/{iso}/{n}", 1000)
                    for n in names[s * 1000 : (s + 1) * 1000]
                ],
            )
            for s in range(shards)
        ],
    )
    finished = f"{(day + dt.timedelta(days=1)).isoformat()}T03:00:00+00:00"
    results = []
    for i, name in enumerate(names):
        duration = rng.uniform(10, 60)
        common = dict(
            clip_id=f"{iso}/{name}",
            date=iso,
            engine="torch",
            model="large-v3",
            duration_s=round(duration, 2),
            job_id=str(job_base + 2),
            array_index=i // 1000,
            node=f"gpu{i // 1000 % 8:02d}",
            finished_at=finished,
            timings={"decode_s": 0.02, "transcribe_s": 0.4},
        )
        if rng.random() < 0.02:
            results.append(
                ClipResult(
                    status="failed",
                    error_kind="corrupt",
                    error="Invalid data found when processing input",
                    **common,
                )
            )
        else:
            text, segments = speech.transcript(duration)
            results.append(
                ClipResult(
                    status="ok",
                    language="en",
                    text=text,
                    segments=segments,
                    alignment="skipped: no alignment model",
                    **common,
                )
            )
    submit = f"{iso}T01:00:00"
    jobs = [
        JobRecord(
            "master",
            str(job_base),
            -1,
            "COMPLETED",
            "0:0",
            40.0,
            "cpu01",
            0,
            submit,
            f"{iso}T01:00:05",
        ),
        JobRecord(
            "transfer",
            str(job_base + 1),
            -1,
            "COMPLETED",
            "0:0",
            600.0,
            "cpu01",
            0,
            submit,
            f"{iso}T01:01:00",
        ),
    ]
    jobs += [
        JobRecord(
            "audio",
            str(job_base + 2),
            s,
            "COMPLETED",
            "0:0",
            900.0,
            f"gpu{s % 8:02d}",
            1,
            submit,
            f"{iso}T01:15:00",
        )
        for s in range(shards)
    ]
    return DayLoad(
        day=iso,
        plan_id="bench",
        dag_run_id=f"bench-{iso}",
        manifest=manifest,
        results=results,
        jobs=jobs,
    )


# Copy a loaded day's rows to another day: every column, days / clip ids / job ids shifted.
_REPLICATE = [
    """INSERT INTO audio_days (day, plan_id, dag_run_id, clips_listed, clips_planned,
              clips_skipped, clips_ok, clips_failed, clips_missing, failed_by_reason,
              audio_seconds, gpu_seconds, wall_seconds, real_time_factor, status)
       SELECT %(dst)s::date, plan_id, 'bench-' || %(dst)s, clips_listed, clips_planned,
              clips_skipped, clips_ok, clips_failed, clips_missing, failed_by_reason,
              audio_seconds, gpu_seconds, wall_seconds, real_time_factor, status
         FROM audio_days WHERE day = %(src)s::date""",
    """INSERT INTO audio_clips (clip_id, day, status, error_kind, error, duration_s, language,
              engine, model, alignment, timings, job_id, array_index, node, finished_at)
       SELECT %(dst)s || substr(clip_id, 11), %(dst)s::date, status, error_kind, error,
              duration_s, language, engine, model, alignment, timings,
              (job_id::bigint + %(jobs)s)::text, array_index, node,
              finished_at + (%(dst)s::date - %(src)s::date) * interval '1 day'
         FROM audio_clips WHERE day = %(src)s::date""",
    """INSERT INTO transcripts (clip_id, text, language, model, segments, word_count)
       SELECT %(dst)s || substr(t.clip_id, 11), t.text, t.language, t.model, t.segments,
              t.word_count
         FROM transcripts t JOIN audio_clips c ON c.clip_id = t.clip_id
        WHERE c.day = %(src)s::date""",
    """INSERT INTO slurm_jobs (job_id, array_index, day, step, state, exit_code, elapsed_s,
              node, gpus, gpu_seconds, submitted_at, started_at)
       SELECT (job_id::bigint + %(jobs)s)::text, array_index, %(dst)s::date, step, state,
              exit_code, elapsed_s, node, gpus, gpu_seconds,
              submitted_at + (%(dst)s::date - %(src)s::date) * interval '1 day',
              started_at + (%(dst)s::date - %(src)s::date) * interval '1 day'
         FROM slurm_jobs WHERE day = %(src)s::date""",
]


def replicate(hook: Any, src: dt.date, dst: dt.date, job_shift: int) -> None:
    with hook.get_conn() as conn, conn.cursor() as cur:
        params = {"src": src.isoformat(), "dst": dst.isoformat(), "jobs": job_shift}
        for sql in _REPLICATE:
            cur.execute(sql, params)
        conn.commit()


class Client:
    """One keep-alive HTTP connection with an Airflow JWT, like a browser tab."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        body = json.dumps({"username": "admin", "password": "admin"})
        self.conn.request("POST", "/auth/token", body, {"Content-Type": "application/json"})
        self.token = json.loads(self.conn.getresponse().read())["access_token"]

    def get(self, path: str) -> tuple[int, bytes, float]:
        start = time.perf_counter()
        self.conn.request("GET", path, headers={"Authorization": f"Bearer {self.token}"})
        resp = self.conn.getresponse()
        body = resp.read()
        return resp.status, body, (time.perf_counter() - start) * 1000


def timed(
    client: Client, name: str, path: str, n: int, check: Callable[[Any], Any] | None = None
) -> dict[str, Any]:
    status, body, _ = client.get(path)  # warm-up
    if status != 200:
        raise RuntimeError(f"GET {path}: HTTP {status}: {body[:300]!r}")
    ms = sorted(client.get(path)[2] for _ in range(n))
    out = {
        "name": name,
        "path": path,
        "bytes": len(body),
        "n": n,
        "p50_ms": round(statistics.median(ms), 1),
        "p95_ms": round(ms[max(0, int(round(n * 0.95)) - 1)], 1),
        "max_ms": round(ms[-1], 1),
    }
    if check:
        out.update(check(json.loads(body)))
    return out


def tree_rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its descendants (the api-server and its worker)."""
    pids, total = [pid], 0
    while pids:
        p = pids.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        pids += [int(c) for c in children]
    return total / 1024


def export_run(client: Client, pid: int, path: str) -> dict[str, Any]:
    """Download ``path`` once while sampling the api-server's RSS every 20 ms."""
    samples: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(tree_rss_mb(pid))
            time.sleep(0.02)

    before = tree_rss_mb(pid)
    thread = threading.Thread(target=sample)
    thread.start()
    status, body, ms = client.get(path)
    stop.set()
    thread.join()
    if status != 200:
        raise RuntimeError(f"GET {path}: HTTP {status}: {body[:300]!r}")
    import pyarrow.parquet as pq  # the reader a researcher uses

    table = pq.read_table(io.BytesIO(body))
    return {
        "path": path,
        "seconds": round(ms / 1000, 2),
        "bytes": len(body),
        "rows": table.num_rows,
        "rss_before_mb": round(before, 1),
        "rss_peak_mb": round(max(samples + [before]), 1),
        "rss_growth_mb": round(max(samples + [before]) - before, 1),
    }


def api_server_pid(home: Path) -> int:
    for pidfile in sorted((home / "run").glob("*api*")):
        return int(pidfile.read_text().split()[0])
    raise RuntimeError(f"no api-server pid file under {home / 'run'}")


def sizes(hook: Any, days: int) -> dict[str, Any]:
    rows = hook.get_records(
        """SELECT c.relname, pg_total_relation_size(c.oid), pg_relation_size(c.oid),
                  pg_indexes_size(c.oid)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 2 DESC"""
    )
    ((db_bytes,),) = hook.get_records("SELECT pg_database_size(current_database())")
    gib = 1024**3
    return {
        "database_gib": round(db_bytes / gib, 2),
        "days": days,
        "per_day_mib": round(db_bytes / days / 1024**2, 1),
        "per_year_gib": round(db_bytes / days * 365 / gib, 1),
        "tables": {
            name: {
                "total_gib": round(total / gib, 3),
                "heap_gib": round(heap / gib, 3),
                "indexes_gib": round(idx / gib, 3),
            }
            for name, total, heap, idx in rows
            if total > 1024**2
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--clips-per-day", type=int, default=20000)
    parser.add_argument("--loaded-days", type=int, default=3)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--db", default="audio_year")
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("AUDIO_TEST_STACK_PORT", 8421))
    )
    parser.add_argument("--deadline", help="HH:MM UTC: stop seeding then, measure what is there")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the --db: apply pending migrations, seed only the days it lacks",
    )
    parser.add_argument("--seed-only", action="store_true", help="stop after seeding")
    parser.add_argument("--seed-workers", type=int, default=1, help="days copied at once")
    parser.add_argument(
        "--airflow-home",
        type=Path,
        default=REPO / ".airflow" / "bench-year",
        help="AIRFLOW_HOME of the bench's api-server",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    os.environ["AIRFLOW_CONN_AUDIO_RESULTS_DB"] = json.dumps(
        {
            "conn_type": "postgres",
            "host": "127.0.0.1",
            "port": 5432,
            "login": "audio",
            "password": "audio",
            "schema": args.db,
        }
    )
    from hpc_pipeline.hooks.results_db import ResultsDbHook

    hook = ResultsDbHook("audio_results_db")
    last = dt.date(2026, 11, 30)
    first = last - dt.timedelta(days=args.days - 1)
    speech = Speech(random.Random(22))
    report: dict[str, Any] = {
        "bench": "year",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {os.cpu_count()} cores, shared",
        "target": {"days": args.days, "clips_per_day": args.clips_per_day},
    }
    if not args.reuse:
        psql(f"DROP DATABASE IF EXISTS {args.db} WITH (FORCE)")
        psql(f"CREATE DATABASE {args.db} OWNER audio")
    report["migrations_applied"] = hook.migrate()
    have = {r[0] for r in hook.get_records("SELECT day FROM audio_days")}
    loads = []
    for k in range(args.loaded_days):
        if first + dt.timedelta(days=k) in have:
            continue
        load = synthetic_day(
            first + dt.timedelta(days=k), args.clips_per_day, speech, 1_000_000 + 10 * k
        )
        start = time.perf_counter()
        hook.record_day(load)
        loads.append(round(time.perf_counter() - start, 2))
        print(f"record_day {load.day}: {loads[-1]} s", flush=True)
    if loads:
        report["record_day_s_empty_db"] = loads
    deadline = None
    if args.deadline:
        hh, mm = map(int, args.deadline.split(":"))
        now = dt.datetime.now(dt.timezone.utc)
        deadline = now.replace(hour=hh, minute=mm, second=0, microsecond=0)
    # The other days of the year are copies of the loaded ones; with --reuse only the days
    # the DB lacks (an earlier run stopped by its deadline goes on where it stopped).
    missing = [
        k for k in range(args.loaded_days, args.days) if first + dt.timedelta(days=k) not in have
    ]
    seeded, start = 0, time.perf_counter()
    lock = threading.Lock()

    def seed(k: int) -> None:
        nonlocal seeded
        if deadline and dt.datetime.now(dt.timezone.utc) >= deadline:
            return
        src = first + dt.timedelta(days=k % args.loaded_days)
        replicate(hook, src, first + dt.timedelta(days=k), 10 * (k - k % args.loaded_days))
        with lock:
            seeded += 1
            if seeded % 10 == 0:
                print(
                    f"replicated {seeded} of {len(missing)} days, "
                    f"{time.perf_counter() - start:.0f} s",
                    flush=True,
                )

    # Workers take the days in order: two at a time share heap pages with their neighbour day.
    with concurrent.futures.ThreadPoolExecutor(args.seed_workers) as pool:
        list(pool.map(seed, missing))
    if missing:
        report["replicate"] = {"days": seeded, "seconds": round(time.perf_counter() - start, 1)}
    if loads or seeded or report["migrations_applied"]:
        start = time.perf_counter()
        with hook.get_conn() as conn:
            conn.autocommit = True
            conn.execute("VACUUM ANALYZE")
        report["vacuum_analyze_s"] = round(time.perf_counter() - start, 1)
    if args.seed_only:
        print(json.dumps(report, indent=1))
        return
    # The day after the year is the measured day load: one an earlier run recorded goes first.
    extra_day = last + dt.timedelta(days=1)
    with hook.get_conn() as conn, conn.cursor() as cur:
        for table in ("audio_clips", "slurm_jobs", "day_claims", "alerts_sent", "audio_days"):
            cur.execute(f"DELETE FROM {table} WHERE day >= %s", (extra_day,))
        conn.commit()
    days = int(hook.get_records("SELECT count(*) FROM audio_days")[0][0])
    last = first + dt.timedelta(days=days - 1)
    report["seeded_days"] = days
    report["clips"] = int(hook.get_records("SELECT count(*) FROM audio_clips")[0][0])
    report["scale_note"] = (
        "full year"
        if days >= args.days
        else f"measured at {days} of {args.days} days; per-year sizes are "
        "extrapolated linearly from the measured per-day size"
    )
    report["sizes_before_extra_day"] = sizes(hook, days)

    # The day load that counts: one more day through record_day on the full database.
    extra = synthetic_day(
        last + dt.timedelta(days=1), args.clips_per_day, Speech(random.Random(days)), 9_100_000
    )
    start = time.perf_counter()
    hook.record_day(extra)
    report["record_day_s_full_db"] = round(time.perf_counter() - start, 2)
    print(f"record_day {extra.day} on the full DB: {report['record_day_s_full_db']} s", flush=True)
    last = last + dt.timedelta(days=1)
    days += 1

    home = args.airflow_home
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW_PORT=str(args.port),
        RESULTS_DB=args.db,
        AIRFLOW_DB="airflow_bench_year",
        AIRFLOW_COMPONENTS="api-server",
        AIRFLOW__API__WORKERS="1",
        VENV=os.environ.get("VENV", "/work/main/.venv"),
    )
    stack = str(REPO / "scripts" / "airflow_stack.sh")
    subprocess.run(["bash", stack, "start"], env=env, check=True)
    try:
        client, n, p = Client(args.port), args.requests, "/audio-pipeline/api"
        mid = first + dt.timedelta(days=days // 2)
        deep = f"{mid}/cam3/clip_015000.m4a"
        rare = rare_word(hook, mid)
        month = f"&start={last - dt.timedelta(days=29)}&end={last}"

        def hits(page: dict[str, Any]) -> dict[str, Any]:
            out = {"hits": len(page["hits"]), "more": page["next_after"] is not None}
            if page.get("ranking"):
                out["ranking"] = page["ranking"]
            return out

        api = [
            timed(client, "days_year", f"{p}/days?start={first}&end={last}", n),
            timed(client, "day_page", f"{p}/days/{mid}", n),
            timed(client, "clips_first_page", f"{p}/days/{mid}/clips?limit=100", n),
            timed(client, "clips_deep_page", f"{p}/days/{mid}/clips?limit=100&after={deep}", n),
            timed(client, "clips_failed", f"{p}/days/{mid}/clips?status=failed&limit=100", n),
        ]
        search = []
        for label, q in (
            ("common", "weather"),
            ("rare", rare),
            ("phrase", '"climate change"'),
            ("prefix", "weath*"),
        ):
            quoted = urllib.parse.quote(q)
            for order in ("recent", "rank"):
                search.append(
                    timed(
                        client,
                        f"search_{label}_{order}_year",
                        f"{p}/search?q={quoted}&order={order}&limit=20",
                        n,
                        hits,
                    )
                )
            search.append(
                timed(
                    client,
                    f"search_{label}_rank_30days",
                    f"{p}/search?q={quoted}&order=rank&limit=20{month}",
                    n,
                    hits,
                )
            )
        pid = api_server_pid(home)
        export = [
            export_run(client, pid, f"{p}/export?start={mid}&end={mid}&format=parquet"),
            export_run(client, pid, f"{p}/export?start={mid}&end={mid}&format=parquet"),
            export_run(
                client,
                pid,
                f"{p}/export?start={mid}&end={mid + dt.timedelta(days=6)}&format=parquet",
            ),
            export_run(client, pid, f"{p}/export?start={mid}&end={mid}&format=parquet&segments=1"),
        ]
    finally:
        subprocess.run(["bash", stack, "stop"], env=env, check=False)
    # How many transcripts match, for scale (after the timings: it reads every match).
    counts = {
        label: int(
            hook.get_records(
                "SELECT count(*) FROM transcripts "
                "WHERE search @@ websearch_to_tsquery('english', %s)",
                (q,),
            )[0][0]
        )
        for label, q in (("common", "weather"), ("rare", rare), ("phrase", '"climate change"'))
    }
    report.update(
        api=api,
        search=search,
        search_matches_in_db=counts,
        search_words={
            "common": "weather",
            "rare": rare,
            "phrase": '"climate change"',
            "prefix": "weath*",
        },
        export=export,
        sizes=sizes(hook, days),
        load_average_1m_at_end=os.getloadavg()[0],
    )
    worst_api = max(r["p95_ms"] for r in api)
    worst_search = max(r["p95_ms"] for r in search)
    report["targets"] = {
        "day_load_lt_60s": {
            "value_s": report["record_day_s_full_db"],
            "met": report["record_day_s_full_db"] < 60,
        },
        "api_p95_lt_300ms": {"worst_p95_ms": worst_api, "met": worst_api < 300},
        "search_p95_lt_500ms": {"worst_p95_ms": worst_search, "met": worst_search < 500},
        "export_one_day_lt_30s": {
            "value_s": export[1]["seconds"],
            "met": export[1]["seconds"] < 30,
        },
        "export_memory_flat": {
            "one_day_growth_mb": export[1]["rss_growth_mb"],
            "seven_days_growth_mb": export[2]["rss_growth_mb"],
        },
    }
    print(json.dumps(report["targets"], indent=1))
    for r in api + search:
        print(
            f"{r['p50_ms']:8.1f} ms p50 {r['p95_ms']:8.1f} p95 {r['max_ms']:8.1f} max  {r['name']}"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
