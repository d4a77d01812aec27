"""The monitoring plugin under a real Airflow api-server, on days the real pipeline recorded.

Two days go through the whole DAG (``dag.test()`` on the test bed): one partial (bad clips),
one whose audio step fails on SLURM (a model that does not exist: every shard exits 3). A
complete day is added through the hook's own load path, with SLURM rows written the way they
were before queue waits were recorded, into the results DB of the session's Airflow
(``airflow_stack``), whose api-server serves the plugin; the API, its auth, the metrics and
the page in headless Chromium are checked against that DB.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

import sample_clips
from audio_hpc.contract import Clip, ClipResult, Manifest, Shard
from dag_support import SOURCE_ROOT, write_config
from hpc_pipeline.hooks.results_db import DayLoad, JobRecord, ResultsDbHook
from support import REPO, AirflowStack, import_dag, stack_port

BASE = f"http://127.0.0.1:{stack_port(0)}"  # the session's Airflow (airflow_stack)
ARTIFACTS = REPO / ".artifacts"
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
TODAY = dt.datetime.now(dt.timezone.utc).date()
PARTIAL, FAILED, COMPLETE = (TODAY - dt.timedelta(days=n) for n in (2, 3, 5))
ENDPOINTS = {
    "/api/days",
    "/api/days/{day}",
    "/api/days/{day}/clips",
    "/api/clips/{clip_id}/transcript",
    "/api/health",
    "/metrics",
}


def _query(dsn: str, sql: str, *args: Any) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, args).fetchall()


def _import_dag(config: Path) -> ModuleType:
    """The DAG module imported under ``config`` (it reads the site config at import)."""
    previous = os.environ.get("AUDIO_PIPELINE_CONFIG")
    os.environ["AUDIO_PIPELINE_CONFIG"] = str(config)
    try:
        module = import_dag("audio_pipeline_daily_failing")
        return module
    finally:
        if previous is not None:
            os.environ["AUDIO_PIPELINE_CONFIG"] = previous


def _complete_day(day: dt.date) -> DayLoad:
    """A complete day of 3 clips whose SLURM rows carry no Submit/Start (pre-0002 rows)."""
    iso = day.isoformat()
    clips = [Clip(f"{iso}/c{i}.m4a", f"c{i}.m4a", f"/src/c{i}.m4a", 10) for i in range(3)]
    results = [
        ClipResult(
            clip_id=c.clip_id,
            date=iso,
            status="ok",
            engine="whisperx",
            model="tiny.en",
            language="en",
            duration_s=20.0,
            text=f"seeded text {i}",
            segments=[{"start": 0, "end": 2, "text": "x"}],
            job_id="900",
            array_index=0,
            node="vm",
            finished_at=f"{iso}T23:00:00+00:00",
        )
        for i, c in enumerate(clips)
    ]
    jobs = [
        JobRecord("master", "898", -1, "COMPLETED", "0:0", 3.0, "vm", 0),
        JobRecord("transfer", "899", -1, "COMPLETED", "0:0", 4.0, "vm", 0),
        JobRecord("audio", "900", 0, "COMPLETED", "0:0", 30.0, "vm", 1),
    ]
    manifest = Manifest(date=iso, plan_id="seed", source="/src", shards=[Shard(0, clips)], listed=3)
    return DayLoad(
        day=iso, plan_id="seed", dag_run_id="seeded", manifest=manifest, results=results, jobs=jobs
    )


@pytest.fixture(scope="module")
def recorded(
    daily_dag: ModuleType, airflow_stack: AirflowStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """The shared stack's results DB given a partial, a failed-step and a complete day (the
    other tests sharing it record only days of 2024)."""
    previous = os.environ.get("AIRFLOW_CONN_AUDIO_RESULTS_DB")
    os.environ["AIRFLOW_CONN_AUDIO_RESULTS_DB"] = json.dumps(
        {
            "conn_type": "postgres",
            "host": "127.0.0.1",
            "port": 5432,
            "login": "audio",
            "password": "audio",
            "schema": airflow_stack.results_db,
        }
    )
    try:
        hook = ResultsDbHook("audio_results_db")
        hook.migrate()
        hook.record_day(_complete_day(COMPLETE))
        sample_clips.make_day(SOURCE_ROOT, PARTIAL.isoformat(), clips=2)
        sample_clips.make_day(SOURCE_ROOT, FAILED.isoformat(), clips=1, bad=False)
        subprocess.run(["chmod", "-R", "a+rX", str(SOURCE_ROOT)], check=True)

        run = daily_dag.dag.test(run_conf={"date": PARTIAL.isoformat()})
        assert run.state == "success", {t.task_id: t.state for t in run.get_task_instances()}
        failing = _import_dag(
            write_config(
                tmp_path_factory.mktemp("failing") / "site.json",
                uuid.uuid4().hex[:8],
                model_name="no-such-model",
            )
        )
        run = failing.dag.test(run_conf={"date": FAILED.isoformat()})
        tasks = {t.task_id: t.state for t in run.get_task_instances()}
        assert (run.state, tasks["audio"], tasks["record_results"]) == (
            "failed",
            "failed",
            "success",
        ), tasks
        yield {"db": airflow_stack.results_db, "dsn": airflow_stack.results_dsn}
    finally:
        if previous is None:
            os.environ.pop("AIRFLOW_CONN_AUDIO_RESULTS_DB", None)
        else:
            os.environ["AIRFLOW_CONN_AUDIO_RESULTS_DB"] = previous


@pytest.fixture(scope="module")
def server(recorded: dict[str, Any], airflow_stack: AirflowStack) -> AirflowStack:
    """The session's Airflow serving the plugin over the results DB above."""
    return airflow_stack


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any) -> None:
        return None


def _get(
    path: str,
    token: str | None = None,
    cookie: str | None = None,
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(BASE + path)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if cookie:
        req.add_header("Cookie", f"_token={cookie}")
    try:
        with urllib.request.build_opener(_NoRedirect).open(req, timeout=60) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def _json(path: str, token: str) -> Any:
    status, _, body = _get(path, token)
    assert status == 200, (path, status, body[:500])
    return json.loads(body)


def _login(server: AirflowStack, username: str) -> str:
    """A JWT of ``username`` from Airflow's own login (passwords: the auth manager's file)."""
    req = urllib.request.Request(
        BASE + "/auth/token",
        method="POST",
        data=json.dumps({"username": username, "password": server.password(username)}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())["access_token"]


@pytest.fixture(scope="module")
def token(server: AirflowStack) -> str:
    return _login(server, "admin")


def test_api_answers_match_the_results_db(recorded: dict[str, Any], token: str) -> None:
    dsn = recorded["dsn"]
    start = COMPLETE - dt.timedelta(days=1)
    listing = _json(f"/audio-pipeline/api/days?start={start}&end={TODAY}", token)
    db_days = {
        row[0]: row[1:]
        for row in _query(
            dsn,
            "SELECT day, status, clips_ok, clips_failed, clips_missing, failed_by_reason, "
            "audio_seconds, gpu_seconds FROM audio_days",
        )
    }
    assert [d["day"] for d in listing["days"]] == [
        (start + dt.timedelta(days=i)).isoformat() for i in range((TODAY - start).days + 1)
    ]
    for d in listing["days"]:
        row = db_days.get(dt.date.fromisoformat(d["day"]))
        got = (
            d["status"],
            d["clips_ok"],
            d["clips_failed"],
            d["clips_missing"],
            d["failed_by_reason"],
            d["audio_seconds"],
            d["gpu_seconds"],
        )
        assert got == (row or ("not_run",) + (None,) * 6), d["day"]
    statuses = {d["day"]: d["status"] for d in listing["days"]}
    assert [statuses[str(d)] for d in (start, COMPLETE, FAILED, PARTIAL)] == [
        "not_run",
        "complete",
        "incomplete",
        "partial",
    ]
    by_day = {d["day"]: d for d in listing["days"]}
    assert set(by_day[str(PARTIAL)]["queue_wait_s"]) == {"master", "transfer", "audio"}
    assert by_day[str(COMPLETE)]["queue_wait_s"] == {}  # rows without Submit/Start

    # One day in full: every SLURM row, with the queue wait sacct's Submit/Start give.
    detail = _json(f"/audio-pipeline/api/days/{PARTIAL}", token)
    jobs = _query(
        dsn,
        "SELECT step, job_id, array_index, state, exit_code, node, "
        "extract(epoch FROM started_at - submitted_at)::float8, elapsed_s "
        "FROM slurm_jobs WHERE day = %s",
        PARTIAL,
    )
    assert sorted(
        (
            j["step"],
            j["job_id"],
            j["array_index"],
            j["state"],
            j["exit_code"],
            j["node"],
            j["queue_wait_s"],
            j["elapsed_s"],
        )
        for j in detail["jobs"]
    ) == sorted(jobs)
    assert {j["step"] for j in detail["jobs"]} == {"master", "transfer", "audio"}
    assert all(
        j["queue_wait_s"] is not None and j["queue_wait_s"] >= 0 and j["submitted_at"]
        for j in detail["jobs"]
    )
    (counts,) = _query(
        dsn,
        "SELECT clips_ok, clips_failed, failed_by_reason, audio_seconds, "
        "gpu_seconds, real_time_factor FROM audio_days WHERE day = %s",
        PARTIAL,
    )
    assert (
        detail["clips_ok"],
        detail["clips_failed"],
        detail["failed_by_reason"],
        detail["audio_seconds"],
        detail["gpu_seconds"],
        detail["real_time_factor"],
    ) == counts
    assert detail["failed_by_reason"] == {k: 1 for k in sample_clips.BAD_CLIPS.values()}
    # per node: the audio step's array index runs, and the clips recorded from each node
    per_node = _query(
        dsn,
        "SELECT node, count(*), count(*) FILTER (WHERE state <> 'COMPLETED') FROM slurm_jobs "
        "WHERE day = %s AND array_index >= 0 AND node IS NOT NULL GROUP BY node",
        PARTIAL,
    )
    clips_per_node = dict(
        (r[0], r[1:])
        for r in _query(
            dsn,
            "SELECT node, count(*), count(*) FILTER (WHERE status = 'failed') FROM audio_clips "
            "WHERE day = %s AND node IS NOT NULL GROUP BY node",
            PARTIAL,
        )
    )
    assert per_node and [
        (n["node"], n["array_indices"], n["array_indices_failed"], n["clips"], n["clips_failed"])
        for n in detail["nodes"]
    ] == [(node, runs, bad, *clips_per_node.get(node, (0, 0))) for node, runs, bad in per_node]
    assert sum(n["clips"] for n in detail["nodes"]) == 6  # every clip of the day ran somewhere
    assert detail["throughput"] == pytest.approx(counts[3] / counts[4])
    failed_day = _json(f"/audio-pipeline/api/days/{FAILED}", token)
    audio = [j for j in failed_day["jobs"] if j["step"] == "audio"]
    assert audio and all((j["state"], j["exit_code"]) == ("FAILED", "3:0") for j in audio)
    assert failed_day["clips_missing"] == 1
    old = _json(f"/audio-pipeline/api/days/{COMPLETE}", token)
    assert [j["queue_wait_s"] for j in old["jobs"]] == [None] * 3
    assert _get(f"/audio-pipeline/api/days/{start}", token)[0] == 404
    assert _get("/audio-pipeline/api/days/2024-02-30", token)[0] == 422

    # Clips: filters and keyset pages cover exactly the DB's rows.
    failed = _json(f"/audio-pipeline/api/days/{PARTIAL}/clips?status=failed", token)
    assert sorted((c["clip_id"], c["error_kind"], c["error"]) for c in failed["clips"]) == sorted(
        _query(
            dsn,
            "SELECT clip_id, error_kind, error FROM audio_clips "
            "WHERE day = %s AND status = 'failed'",
            PARTIAL,
        )
    )
    corrupt = _json(f"/audio-pipeline/api/days/{PARTIAL}/clips?error_kind=corrupt", token)
    assert [c["clip_id"].split("/", 1)[1] for c in corrupt["clips"]] == ["corrupt.m4a"]
    seen, after = [], ""
    while True:
        page = _json(f"/audio-pipeline/api/days/{PARTIAL}/clips?limit=2{after}", token)
        assert page["total"] == 6
        seen += [c["clip_id"] for c in page["clips"]]
        if not page["next_after"]:
            break
        after = f"&after={urllib.parse.quote(page['next_after'])}"
    assert seen == [
        r[0]
        for r in _query(
            dsn, "SELECT clip_id FROM audio_clips WHERE day = %s ORDER BY clip_id", PARTIAL
        )
    ]

    ok_id, text = _query(dsn, "SELECT clip_id, text FROM transcripts ORDER BY clip_id LIMIT 1")[0]
    got = _json(f"/audio-pipeline/api/clips/{urllib.parse.quote(ok_id)}/transcript", token)
    assert (got["clip_id"], got["text"]) == (ok_id, text) and got["segments"]
    failed_id = failed["clips"][0]["clip_id"]
    assert (
        _get(f"/audio-pipeline/api/clips/{urllib.parse.quote(failed_id)}/transcript", token)[0]
        == 404
    )

    health = _json("/audio-pipeline/api/health?window=7", token)
    window = {TODAY - dt.timedelta(days=n) for n in range(1, 8)}
    assert health["results_db_reachable"] is True
    assert health["last_complete_day"] == str(COMPLETE)
    assert health["days_missing"] == sorted(str(d) for d in window - set(db_days))
    assert health["days_not_complete"] == [str(FAILED), str(PARTIAL)]


def test_every_route_needs_an_airflow_login(recorded: dict[str, Any], token: str) -> None:
    ok_id, text = _query(
        recorded["dsn"], "SELECT clip_id, text FROM transcripts ORDER BY clip_id LIMIT 1"
    )[0]
    transcript = f"/audio-pipeline/api/clips/{urllib.parse.quote(ok_id)}/transcript"
    api = [
        transcript,
        "/audio-pipeline/api/days",
        f"/audio-pipeline/api/days/{PARTIAL}",
        f"/audio-pipeline/api/days/{PARTIAL}/clips",
        "/audio-pipeline/api/health",
        "/audio-pipeline/metrics",
        "/audio-pipeline/openapi.json",
    ]
    for path in api:
        status, _, body = _get(path)
        assert status == 401, path
        assert text.encode() not in body and b"clip_id" not in body
        status, _, body = _get(path, token="not-a-jwt")
        assert status in (401, 403) and text.encode() not in body, path
        assert _get(path, token=token)[0] == 200, path
    # The UI's cookie is a login too (what the page's own fetch() calls carry).
    assert _get(transcript, cookie=token)[0] == 200
    # Pages and their assets send the browser to Airflow's login page, and back after it.
    for path in (
        f"/audio-pipeline/?day={PARTIAL}",
        "/audio-pipeline/static/status.js",
        "/audio-pipeline/docs",
    ):
        status, headers, body = _get(path)
        assert status == 303 and headers["location"].startswith("/auth/login"), path
        assert urllib.parse.parse_qs(urllib.parse.urlsplit(headers["location"]).query)["next"] == [
            path
        ]
        assert _get(path, cookie=token)[0] == 200, path
    assert _get("/audio-pipeline/static/../app.py", cookie=token)[0] == 404


def test_a_login_without_access_to_the_dag_gets_403(
    recorded: dict[str, Any], server: AirflowStack
) -> None:
    """Logged in, but the auth manager gives no right to read the pipeline DAG's runs: 403 on
    every route, never a transcript; Airflow's read-only role is enough to read."""
    ok_id, text = _query(
        recorded["dsn"], "SELECT clip_id, text FROM transcripts ORDER BY clip_id LIMIT 1"
    )[0]
    transcript = f"/audio-pipeline/api/clips/{urllib.parse.quote(ok_id)}/transcript"
    outsider, viewer = _login(server, "outsider"), _login(server, "viewer")
    for path in (
        transcript,
        "/audio-pipeline/api/days",
        f"/audio-pipeline/api/days/{PARTIAL}",
        f"/audio-pipeline/api/days/{PARTIAL}/clips",
        "/audio-pipeline/api/health",
        "/audio-pipeline/metrics",
        "/audio-pipeline/openapi.json",
    ):
        status, _, body = _get(path, token=outsider)
        assert status == 403 and text.encode() not in body and b"clip_id" not in body, path
        assert _get(path, token=viewer)[0] == 200, path
    # Pages too: a login is there, so no redirect to the login page, but no access either.
    for path in (f"/audio-pipeline/?day={PARTIAL}", "/audio-pipeline/static/status.js"):
        status, headers, _ = _get(path, cookie=outsider)
        assert status == 403 and "location" not in {k.lower() for k in headers}, path
        assert _get(path, cookie=viewer)[0] == 200, path
    assert _get(transcript, cookie=outsider)[0] == 403


def test_openapi_schema_and_plugin_registration(token: str) -> None:
    schema = _json("/audio-pipeline/openapi.json", token)
    assert ENDPOINTS <= set(schema["paths"])
    assert schema["paths"]["/api/days/{day}"]["get"]["responses"]["200"]
    plugins = _json("/api/v2/plugins", token)["plugins"]
    (ours,) = [p for p in plugins if p["name"] == "audio_pipeline"]
    assert [a["url_prefix"] for a in ours["fastapi_apps"]] == ["/audio-pipeline"]
    assert ours["external_views"][0]["url_route"] == "audio-pipeline"
    # The plugins folder imports the plugin once: no "already registered" or import errors.
    assert _json("/api/v2/plugins/importErrors", token)["import_errors"] == []


def test_metrics_parse_and_match_the_db(recorded: dict[str, Any], token: str) -> None:
    status, headers, body = _get("/audio-pipeline/metrics", token)
    assert status == 200 and headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("audio_pipeline_results_db_up") == 1
    # every day of the DB by status (the shared stack's other tests record days of 2024)
    by_status = dict(
        _query(recorded["dsn"], "SELECT status, count(*) FROM audio_days GROUP BY status")
    )
    assert {
        s: value("audio_pipeline_days", status=s) for s in ("complete", "partial", "incomplete")
    } == {s: by_status.get(s, 0) for s in ("complete", "partial", "incomplete")}
    assert by_status["complete"] >= 1 and by_status["partial"] >= 1
    (last,) = _query(
        recorded["dsn"],
        "SELECT clips_ok, clips_failed, clips_missing, "
        "failed_by_reason, audio_seconds, gpu_seconds FROM audio_days "
        "WHERE day = %s",
        PARTIAL,
    )
    assert [
        value("audio_pipeline_last_day_clips", status=s) for s in ("ok", "failed", "missing")
    ] == list(last[:3])
    assert {
        reason: value("audio_pipeline_last_day_failed_clips", reason=reason) for reason in last[3]
    } == last[3]
    assert value("audio_pipeline_last_day_audio_seconds") == pytest.approx(last[4])
    assert value("audio_pipeline_last_day_gpu_seconds") == pytest.approx(last[5])
    assert (
        value("audio_pipeline_last_day_timestamp_seconds")
        == dt.datetime.combine(PARTIAL, dt.time(), dt.timezone.utc).timestamp()
    )
    age = (
        dt.datetime.now(dt.timezone.utc)
        - dt.datetime.combine(COMPLETE + dt.timedelta(days=1), dt.time(), dt.timezone.utc)
    ).total_seconds()
    assert value("audio_pipeline_last_complete_day_age_seconds") == pytest.approx(age, abs=120)


def test_status_page_draws_the_days_in_chromium(
    recorded: dict[str, Any], server: AirflowStack
) -> None:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    (partial,) = _query(
        recorded["dsn"],
        "SELECT clips_ok, audio_seconds, gpu_seconds FROM audio_days WHERE day = %s",
        PARTIAL,
    )
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(f"{server.base_url}/audio-pipeline/?day={PARTIAL}")  # not logged in: login page
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill("admin")
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"**/audio-pipeline/?day={PARTIAL}", timeout=30_000)  # and back
        page.wait_for_selector("body[data-ready='1']", timeout=30_000)
        page.wait_for_selector(f"#day-panel[data-day='{PARTIAL}']", timeout=30_000)
        page.wait_for_selector("#day-clips tbody tr", timeout=30_000)
        drawn = page.evaluate("""() => Object.fromEntries(
            [...document.querySelectorAll('.chart')].map(el => {
              const option = echarts.getInstanceByDom(el).getOption();
              return [el.dataset.chart, {canvases: el.querySelectorAll('canvas').length,
                                         days: el.dataset.days, series: option.series.map(
                                           s => ({name: s.name, data: s.data}))}];
            }))""")
        assert set(drawn) == {"calendar", "clips", "hours", "throughput", "queue"}
        assert all(c["canvases"] >= 1 and c["days"] == "90" for c in drawn.values()), drawn
        calendar = dict(map(tuple, drawn["calendar"]["series"][0]["data"]))
        assert len(calendar) == 90
        assert [calendar[str(d)] for d in (PARTIAL, FAILED, COMPLETE, TODAY)] == [2, 1, 3, 0]
        index = 89 - (TODAY - PARTIAL).days  # the day's position on the 90-day axes
        series = {c: {s["name"]: s["data"] for s in drawn[c]["series"]} for c in drawn}
        assert series["clips"]["ok"][index] == partial[0]
        assert {f"failed: {k}" for k in sample_clips.BAD_CLIPS.values()} <= set(series["clips"])
        assert all(
            series["clips"][f"failed: {k}"][index] == 1 for k in sample_clips.BAD_CLIPS.values()
        )
        assert series["hours"]["audio hours"][index] == pytest.approx(partial[1] / 3600)
        assert series["hours"]["GPU hours"][index] == pytest.approx(partial[2] / 3600)
        assert series["throughput"]["throughput"][index] == pytest.approx(partial[1] / partial[2])
        assert all(
            series["queue"][step][index] is not None for step in ("master", "transfer", "audio")
        )
        nodes = page.locator("#day-nodes tbody tr").all_inner_texts()
        assert nodes and all(len(r.split("\t")) == 5 for r in nodes), nodes
        rows = page.locator("#day-clips tbody tr").all_inner_texts()
        assert len(rows) == 4 and all(
            any(k in r for k in sample_clips.BAD_CLIPS.values()) for r in rows
        )
        page.screenshot(path=str(ARTIFACTS / "status_page.png"), full_page=True)

        # A click on the calendar opens that day.
        box = page.locator("#chart-calendar").bounding_box()
        assert box, "the calendar is drawn"
        x, y = page.evaluate(f"""() => audioStatus.charts.calendar.convertToPixel(
            {{calendarIndex: 0}}, '{FAILED}')""")
        page.mouse.click(box["x"] + x, box["y"] + y)
        page.wait_for_selector(f"#day-panel[data-day='{FAILED}']", timeout=15_000)
        assert page.locator("#day-status").inner_text() == "incomplete"
        assert "FAILED" in page.locator("#day-jobs").inner_text()

        # Reachable from the Airflow UI's navigation: the page inside the UI (the UI's own
        # bundle is heavy: generous waits for a loaded CI machine).
        page.goto(f"{server.base_url}/")
        page.get_by_role("link", name="Audio pipeline").first.click(timeout=120_000)
        page.wait_for_url("**/plugin/audio-pipeline**", timeout=60_000)
        frame = page.frame_locator("iframe").first
        frame.locator("body[data-ready='1']").wait_for(timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / "status_page_in_airflow_ui.png"))
        browser.close()
