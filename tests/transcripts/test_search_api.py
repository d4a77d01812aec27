"""Search and export through a real Airflow api-server (the monitoring plugin, auth on), and
the status page's search box in headless Chromium."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from corpus import DAYS

REPO = Path(__file__).resolve().parents[2]
NS = os.environ.get("AUDIO_TEST_NS", "")
PORT = int(os.environ.get("AUDIO_TEST_STACK_PORT", "8081")) + 3
BASE = f"http://127.0.0.1:{PORT}"
HOME = REPO / ".airflow" / f"test-transcripts{NS}"
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
SEARCH = "/audio-pipeline/api/search"
EXPORT = "/audio-pipeline/api/export"


@pytest.fixture(scope="module")
def server(corpus_db: dict[str, str], airflow_db: None) -> Iterator[str]:
    """An api-server alone (one worker) with the plugin over the corpus' results DB."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
    env.update(
        AIRFLOW_HOME=str(HOME),
        AIRFLOW_PORT=str(PORT),
        AIRFLOW_DB=f"airflow_test{NS}",
        RESULTS_DB=corpus_db["db"],
        AIRFLOW_COMPONENTS="api-server",
        AIRFLOW__API__WORKERS="1",
        AIRFLOW_USERS="admin:admin,viewer:viewer,outsider:",
        VENV=os.environ.get("VENV", str(Path(sys.executable).parents[1])),
    )
    script = str(REPO / "scripts" / "airflow_stack.sh")
    subprocess.run(["bash", script, "start"], env=env, check=True)
    try:
        yield BASE
    finally:
        subprocess.run(["bash", script, "stop"], env=env, check=False)


def get(path: str, token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(BASE + path)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def login(username: str) -> str:
    passwords = json.loads((HOME / "passwords.json").read_text())
    req = urllib.request.Request(
        BASE + "/auth/token",
        method="POST",
        data=json.dumps({"username": username, "password": passwords[username]}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())["access_token"]


@pytest.fixture(scope="module")
def token(server: str) -> str:
    return login("admin")


def q(path: str, **params: str) -> str:
    return f"{path}?{urllib.parse.urlencode(params)}"


def test_search_answers_ranked_pages_with_snippets(token: str) -> None:
    status, _, body = get(q(SEARCH, q='"climate change"', order="rank", limit="1"), token)
    assert status == 200
    page = json.loads(body)
    assert [h["clip_id"] for h in page["hits"]] == ["2025-03-02/b.m4a"]
    assert any(p["match"] for p in page["hits"][0]["snippet"]) and page["next_after"]
    # both matches were ranked (fewer than the newest max_ranked the API ranks at most)
    assert page["ranking"] == {
        "ranked": 2,
        "max_ranked": 1000,
        "all_matches": True,
        "oldest_day": "2025-03-01",
    }
    status, _, body = get(
        q(SEARCH, q='"climate change"', order="rank", limit="1", after=page["next_after"]), token
    )
    second = json.loads(body)
    assert [h["clip_id"] for h in second["hits"]] == ["2025-03-01/a.m4a"]
    recent = json.loads(
        get(q(SEARCH, q="climate", order="recent", start="2025-03-02", end="2025-03-02"), token)[2]
    )
    assert [h["clip_id"] for h in recent["hits"]] == ["2025-03-02/b.m4a", "2025-03-02/a.m4a"]
    assert recent["ranking"] is None


@pytest.mark.parametrize(
    "params, reason",
    [
        ({"q": ""}, "empty"),
        ({"q": "x" * 201}, "characters long"),
        ({"q": '"climate change'}, "unbalanced double quote"),
        ({"q": "the"}, "stop words"),
        ({"q": "climate", "start": "2025-03-02", "end": "2025-03-01"}, "backwards"),
        ({"q": "climate", "after": "garbage"}, "cursor"),
    ],
)
def test_bad_searches_get_400_with_the_reason(
    token: str, params: dict[str, str], reason: str
) -> None:
    status, _, body = get(q(SEARCH, **params), token)
    assert status == 400 and reason in json.loads(body)["detail"], body


def test_export_streams_parquet_and_jsonl(token: str) -> None:
    status, headers, body = get(q(EXPORT, start="2025-03-01", end="2025-03-02"), token)
    assert status == 200 and headers["content-type"] == "application/vnd.apache.parquet"
    assert headers.get("transfer-encoding") == "chunked"  # streamed, not buffered
    assert 'filename="transcripts_2025-03-01_2025-03-02.parquet"' in headers["content-disposition"]
    table = pq.read_table(io.BytesIO(body))
    assert table.column("clip_id").to_pylist() == sorted(
        f"{d}/{n}" for d, clips in DAYS.items() for n in clips
    )
    status, headers, body = get(
        q(EXPORT, start="2025-03-02", end="2025-03-02", format="jsonl", segments="1"), token
    )
    assert status == 200 and headers["content-type"] == "application/x-ndjson"
    rows = [json.loads(line) for line in body.splitlines()]
    assert {r["clip_id"] for r in rows} == {f"2025-03-02/{n}" for n in DAYS["2025-03-02"]}
    assert all(
        set(r) == {"clip_id", "day", "segment", "start_s", "end_s", "text", "language"}
        for r in rows
    )


@pytest.mark.parametrize(
    "params, reason",
    [
        ({"start": "2025-03-02", "end": "2025-03-01"}, "backwards"),
        ({"start": "2025-03-01", "end": "2025-03-01", "format": "csv"}, "format 'csv'"),
        ({"start": "2024-01-01", "end": "2025-03-01"}, "at most 366 days"),
    ],
)
def test_bad_exports_get_400_with_the_reason(
    token: str, params: dict[str, str], reason: str
) -> None:
    status, _, body = get(q(EXPORT, **params), token)
    assert status == 400 and reason in json.loads(body)["detail"], body


def test_search_and_export_need_a_login_with_access_to_the_dag(server: str) -> None:
    paths = [q(SEARCH, q="climate"), q(EXPORT, start="2025-03-01", end="2025-03-02")]
    outsider, viewer = login("outsider"), login("viewer")
    for path in paths:
        status, _, body = get(path)
        assert status == 401 and b"limate" not in body, path
        assert get(path, "not-a-jwt")[0] in (401, 403), path
        status, _, body = get(path, outsider)
        assert status == 403 and b"limate" not in body, path
        assert get(path, viewer)[0] == 200, path


def test_openapi_schema_documents_search_and_export(token: str) -> None:
    schema = json.loads(get("/audio-pipeline/openapi.json", token)[2])
    search = schema["paths"]["/api/search"]["get"]
    assert {p["name"] for p in search["parameters"]} >= {
        "q",
        "start",
        "end",
        "status",
        "language",
        "order",
        "limit",
        "after",
    }
    assert search["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "SearchPage"
    )
    assert "400" in search["responses"]
    export = schema["paths"]["/api/export"]["get"]
    assert set(export["responses"]["200"]["content"]) == {
        "application/vnd.apache.parquet",
        "application/x-ndjson",
    }
    assert "SearchHit" in schema["components"]["schemas"]


def test_search_box_highlights_matches_and_opens_the_transcript(server: str) -> None:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(f"{server}/audio-pipeline/")  # not logged in: login page
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill("admin")
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/audio-pipeline/**", timeout=30_000)
        page.wait_for_selector("body[data-ready='1']", timeout=30_000)
        page.get_by_label("Search transcripts").fill('"climate change"')
        page.get_by_label("Search transcripts").press("Enter")
        page.wait_for_selector("#search-results[data-state='done']", timeout=30_000)
        days = page.locator(".search-day").evaluate_all("els => els.map(e => e.dataset.day)")
        assert days == ["2025-03-02", "2025-03-01"]  # newest day first
        marks = page.locator("#search-results mark").all_inner_texts()
        assert marks and {m.lower() for m in marks} <= {"climate", "change", "changing"}  # stems
        assert page.locator("#search-results li").count() == 2
        page.get_by_label("Order").select_option("rank")
        page.get_by_label("Search transcripts").press("Enter")
        page.wait_for_selector("#search-results[data-state='done']", timeout=30_000)
        assert "best first among all 2 matches" in page.locator("#search-info").inner_text()
        page.get_by_role("link", name="2025-03-01/a.m4a").click()
        page.wait_for_selector("#transcript-panel[data-clip='2025-03-01/a.m4a']", timeout=15_000)
        cells = page.locator("#transcript-segments tbody tr").evaluate_all(
            "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
        )
        assert [c[:2] for c in cells] == [["0:00.0", "0:01.3"], ["0:01.5", "0:02.8"]]
        assert page.locator("#transcript-segments mark").count() >= 2
        page.screenshot(path=str(ARTIFACTS / "transcript_search.png"), full_page=True)

        # A bad query shows the API's reason, not an empty list.
        page.get_by_label("Search transcripts").fill('"climate')
        page.get_by_role("button", name="Search").click()
        page.wait_for_selector("#search-error:not([hidden])", timeout=15_000)
        assert "unbalanced double quote" in page.locator("#search-error").inner_text()
        browser.close()
