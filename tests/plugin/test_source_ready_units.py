"""Late data, without the cluster: the readiness rules on listing snapshots, the ``find``
record parser, the config block, and the trigger driving the Globus listing (the Globus
cloud is mocked with ``globus_sdk.testing``; everything else is the real code)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import globus_sdk
import pytest
import responses
from globus_sdk.testing import RegisteredResponse, load_response

from hpc_pipeline.config import Readiness, load_config
from hpc_pipeline.hooks.globus import GlobusListingHook
from hpc_pipeline.readiness import Listing, ReadinessWatch, SourceFile, deadline_message, duration
from hpc_pipeline.slurm.parse import parse_tree
from hpc_pipeline.triggers.source_ready import SourceReadyTrigger

WHERE = "/srv/audio-source/2024-01-15"
T0 = 1705388400.0  # 2024-01-16 07:00:00 UTC


def _listing(t: float, *files: tuple[str, int, float], exists: bool = True) -> Listing:
    return Listing(WHERE, tuple(SourceFile(*f) for f in files) if exists else None, T0 + t)


def test_marker_rule_waits_for_the_marker_only() -> None:
    watch = ReadinessWatch(Readiness(rule="marker", marker_name="_READY"))
    first = watch.observe(_listing(0, exists=False))
    assert not first.ready and first.waiting_for == f"directory {WHERE} does not exist"
    clips = [("a.m4a", 10, T0), ("sub/b.mp4", 20, T0)]
    second = watch.observe(_listing(60, *clips))
    assert not second.ready and second.changed
    assert second.waiting_for == f"no marker file `_READY` in {WHERE}"
    assert watch.observe(_listing(120, *clips, ("_READY", 0, T0 + 100))).ready
    # A marker on an empty day is an explicit "this day has no clips": ready.
    assert ReadinessWatch(Readiness(rule="marker")).observe(_listing(0, ("_READY", 0, T0))).ready


def test_stable_rule_needs_clips_and_an_unchanged_listing_for_the_window() -> None:
    watch = ReadinessWatch(Readiness(rule="stable", stable_s=600, min_clips=1))
    assert "0 clips" in watch.observe(_listing(0, ("notes.txt", 3, T0))).waiting_for
    a = ("a.m4a", 10, T0)
    assert not watch.observe(_listing(60, a)).ready  # first seen: clock starts
    waiting = watch.observe(_listing(400, a))
    assert not waiting.ready and not waiting.changed
    assert waiting.waiting_for == f"listing of {WHERE} unchanged for only 5m40s (needs 10m00s)"
    grown = watch.observe(_listing(500, ("a.m4a", 99, T0 + 450)))  # same name, still growing
    assert grown.changed and not grown.ready
    assert not watch.observe(_listing(1050, ("a.m4a", 99, T0 + 450))).ready  # 550 s quiet
    assert watch.observe(_listing(1100, ("a.m4a", 99, T0 + 450))).ready  # 600 s quiet
    # Preserved (old) mtimes do not make a fresh arrival look settled: the clock is ours.
    late = watch.observe(_listing(1200, ("a.m4a", 99, T0 + 450), ("b.wav", 5, T0 - 86400)))
    assert late.changed and not late.ready


def test_snapshot_and_deadline_message_name_what_was_missing() -> None:
    watch = ReadinessWatch(Readiness(rule="marker"))
    files = [(f"c{i:04d}.m4a", 1_000_000, T0 + i) for i in range(1234)] + [("x.txt", 5, T0)]
    watch.observe(_listing(0, *files))
    decision = watch.observe(_listing(300, *files))
    snap = watch.snapshot("2024-01-15", T0 - 600)
    assert (snap["clips"], snap["files"], snap["clip_bytes"], snap["polls"]) == (
        1234,
        1235,
        1_234_000_000,
        2,
    )
    assert snap["waited_s"] == 900
    msg = deadline_message(snap, decision.waiting_for, 6 * 3600)
    assert msg == (
        "day 2024-01-15: no marker file `_READY` in /srv/audio-source/2024-01-15 "
        "after 6h00m (rule marker, 2 polls); 1,234 clips (1.2 GB), 1,235 files; "
        "last change seen 2024-01-16 07:00:00 UTC, newest file modified "
        "2024-01-16 07:20:33 UTC. Nothing was submitted; clear the task to wait again."
    )
    assert duration(95) == "1m35s" and duration(4) == "4s"


def test_parse_tree_keeps_any_file_name() -> None:
    out = "10 1705388400.5 a b.m4a\x000 1705388401.0000000000 sub/we\nird;$(x).wav\x00"
    assert parse_tree(out) == [
        ("a b.m4a", 10, 1705388400.5),
        ("sub/we\nird;$(x).wav", 0, 1705388401.0),
    ]
    assert parse_tree("") == []


def test_readiness_config_block(tmp_path: Path) -> None:
    site = tmp_path / "site.json"
    site.write_text(json.dumps({"readiness": {"rule": "marker", "marker_name": "DONE"}}))
    r = load_config(str(site)).readiness
    assert (r.rule, r.marker_name, r.stable_s) == ("marker", "DONE", 1800.0)
    site.write_text(json.dumps({"readiness": {"rule": "sometimes"}}))
    with pytest.raises(ValueError, match="readiness.rule must be marker, stable or none"):
        load_config(str(site))
    site.write_text(json.dumps({"readiness": {"stable_minutes": 5}}))
    with pytest.raises(ValueError, match="unknown key readiness.'stable_minutes'"):
        load_config(str(site))


# -- the trigger on the Globus backend (Globus cloud mocked) --------------------------------
SRC = "aaaaaaaa-0000-0000-0000-000000000001"
ROOT = "/src/2024-01-15"


@pytest.fixture
def globus_api() -> Iterator[None]:
    os.environ["AIRFLOW_CONN_GLOBUS_TEST"] = json.dumps(
        {"conn_type": "generic", "login": "client-id", "password": "client-secret"}
    )
    responses.start()
    load_response(globus_sdk.ConfidentialAppAuthClient.oauth2_client_credentials_tokens)
    yield
    responses.stop()
    responses.reset()
    del os.environ["AIRFLOW_CONN_GLOBUS_TEST"]


def _ls(path: str, items: list[tuple[str, str, int]], status: int = 200) -> None:
    body: dict[str, Any] = {
        "DATA_TYPE": "file_list",
        "path": path,
        "DATA": [
            {
                "DATA_TYPE": "file",
                "name": n,
                "type": t,
                "size": s,
                "last_modified": "2024-01-16 07:12:00+00:00",
            }
            for n, t, s in items
        ],
    }
    if status == 404:
        body = {
            "code": "ClientError.NotFound",
            "message": f"Directory '{path}' not found",
            "request_id": "x",
            "resource": "/operation/endpoint/ls",
        }
    RegisteredResponse(
        service="transfer",
        path=f"/v0.10/operation/endpoint/{SRC}/ls",
        status=status,
        json=body,
        match=[responses.matchers.query_param_matcher({"path": path}, strict_match=False)],
    ).add()


def _trigger(rule: Readiness, deadline_s: float) -> SourceReadyTrigger:
    now = time.time()
    return SourceReadyTrigger(
        day="2024-01-15",
        where=ROOT,
        backend="globus",
        rule=asdict(rule),
        started_at=now,
        deadline_at=now + deadline_s,
        globus_conn_id="globus_test",
        collection=SRC,
    )


async def _first_event(trigger: SourceReadyTrigger) -> dict[str, Any]:
    async for event in trigger.run():
        return event.payload
    raise AssertionError("no event")


def test_globus_listing_recurses_and_reports_a_missing_day(globus_api: None) -> None:
    _ls(f"{ROOT}/", [("a.m4a", "file", 5), ("sub", "dir", 0)])
    _ls(f"{ROOT}/sub/", [("b.MP4", "file", 7)])
    hook = GlobusListingHook("globus_test", SRC)
    stamp = 1705389120.0  # 2024-01-16 07:12:00 UTC
    assert sorted(hook.list_tree(ROOT) or []) == [("a.m4a", 5, stamp), ("sub/b.MP4", 7, stamp)]
    _ls("/src/2024-01-16/", [], status=404)
    assert hook.list_tree("/src/2024-01-16") is None
    token_calls = [c for c in responses.calls if str(c.request.url).endswith("/v2/oauth2/token")]
    assert len(token_calls) == 1, "one client, one token for the hook's life"


def test_globus_trigger_waits_for_the_marker_then_fires(globus_api: None) -> None:
    # Responses registered for one URL are served in order, the last one repeating.
    _ls(f"{ROOT}/", [], status=404)
    _ls(f"{ROOT}/", [("a.m4a", "file", 5)])
    _ls(f"{ROOT}/", [("a.m4a", "file", 5), ("b.m4a", "file", 6), ("_READY", "file", 0)])
    rule = Readiness(rule="marker", poll_interval_s=0.05, max_poll_interval_s=0.1)
    event = asyncio.run(_first_event(_trigger(rule, deadline_s=30)))
    assert event["status"] == "ready", event
    assert (event["snapshot"]["clips"], event["snapshot"]["polls"]) == (2, 3)


def test_globus_trigger_deadline_names_what_was_missing(globus_api: None) -> None:
    _ls(f"{ROOT}/", [("a.m4a", "file", 5)])
    rule = Readiness(rule="marker", poll_interval_s=0.1, max_poll_interval_s=0.2)
    event = asyncio.run(_first_event(_trigger(rule, deadline_s=1)))
    assert event["status"] == "deadline"
    assert event["message"].startswith(
        f"day 2024-01-15: no marker file `_READY` in {ROOT} after 1s (rule marker, "
    )
    assert "1 clips (5 B), 1 files" in event["message"]


def test_globus_trigger_gives_up_at_once_on_refused_credentials(globus_api: None) -> None:
    RegisteredResponse(
        service="transfer",
        path=f"/v0.10/operation/endpoint/{SRC}/ls",
        status=403,
        json={"code": "PermissionDenied", "message": "denied", "request_id": "x", "resource": "ls"},
    ).add()
    event = asyncio.run(_first_event(_trigger(Readiness(rule="marker"), deadline_s=600)))
    assert event["status"] == "error" and "cannot list" in event["message"]
    assert "PermissionDenied" in event["message"]


def test_globus_trigger_rides_out_outages_and_names_the_last_error(globus_api: None) -> None:
    def unavailable() -> None:
        RegisteredResponse(
            service="transfer",
            path=f"/v0.10/operation/endpoint/{SRC}/ls",
            status=503,
            json={
                "code": "ServiceUnavailable",
                "message": "down",
                "request_id": "x",
                "resource": "ls",
            },
        ).add()

    unavailable()
    _ls(f"{ROOT}/", [("a.m4a", "file", 5), ("_READY", "file", 0)])
    rule = Readiness(rule="marker", poll_interval_s=0.05, max_poll_interval_s=0.1)
    event = asyncio.run(_first_event(_trigger(rule, deadline_s=30)))
    assert event["status"] == "ready" and event["snapshot"]["polls"] == 1, event

    responses.reset()
    load_response(globus_sdk.ConfidentialAppAuthClient.oauth2_client_credentials_tokens)
    unavailable()
    event = asyncio.run(_first_event(_trigger(rule, deadline_s=1)))
    assert event["status"] == "deadline"
    assert event["message"].startswith("day 2024-01-15: no listing of the source day after 1s")
    assert "directory not seen; last poll failed: TransferAPIError" in event["message"]
