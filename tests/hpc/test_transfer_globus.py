"""The Globus backend, offline, against the SDK's own testing helpers (``responses`` under
the hood): what is submitted, how a retry re-attaches instead of submitting twice, and how
per-file outcomes land in transfer.json."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import globus_sdk
import pytest
import responses
from globus_sdk.testing import RegisteredResponse, load_response

from audio_hpc.contract import Clip, Manifest, Shard
from audio_hpc.transfer.globus import (
    GlobusTransfer,
    GlobusTransferError,
    list_day,
    load_credentials,
)

SRC, DST = "aaaaaaaa-0000-0000-0000-000000000001", "bbbbbbbb-0000-0000-0000-000000000002"
DATE = "2024-01-15"
SYNC_CHECKSUM = 3  # TransferData encodes sync_level="checksum" as 3


@pytest.fixture(autouse=True)
def mocked_api() -> Iterator[None]:
    responses.start()
    yield
    responses.stop()
    responses.reset()


def _manifest() -> Manifest:
    clips = [Clip(f"{DATE}/{n}", n, f"/src/{DATE}/{n}", 10) for n in ("a.m4a", "b.mp4", "c.wav")]
    return Manifest(
        date=DATE, plan_id="run-1", source=f"globus:{SRC}:/src", shards=[Shard(0, clips)]
    )


def _task(task_id: str, *statuses: str) -> None:
    """GET /task/<id> answers the statuses in order (the last one repeats)."""
    for status in statuses:
        RegisteredResponse(
            service="transfer",
            path=f"/v0.10/task/{task_id}",
            json={
                "DATA_TYPE": "task",
                "task_id": task_id,
                "status": status,
                "nice_status": "PERMISSION_DENIED" if status == "FAILED" else None,
            },
        ).add()


def _outcomes(task_id: str) -> None:
    RegisteredResponse(
        service="transfer",
        path=f"/v0.10/task/{task_id}/successful_transfers",
        json={
            "DATA_TYPE": "successful_transfers",
            "next_marker": None,
            "DATA": [
                {
                    "source_path": f"/src/{DATE}/a.m4a",
                    "destination_path": f"/stage/{DATE}/audio/a.m4a",
                }
            ],
        },
    ).add()
    RegisteredResponse(
        service="transfer",
        path=f"/v0.10/task/{task_id}/skipped_errors",
        json={
            "DATA_TYPE": "skipped_errors",
            "next_marker": None,
            "DATA": [
                {
                    "source_path": f"/src/{DATE}/c.wav",
                    "error_code": "PERMISSION_DENIED",
                    "error_details": "open: permission denied",
                }
            ],
        },
    ).add()


def _transfer(tmp_path: Path, timeout_s: float = 60) -> GlobusTransfer:
    day = tmp_path / DATE
    (day / "audio").mkdir(parents=True, exist_ok=True)
    for name in ("a.m4a", "b.mp4"):  # what Globus wrote (b was already identical there)
        (day / "audio" / name).write_bytes(name.encode())
    return GlobusTransfer(
        globus_sdk.TransferClient(),
        SRC,
        DST,
        f"/stage/{DATE}",
        day,
        poll_s=1,
        timeout_s=timeout_s,
        sleep=lambda s: None,
    )


def _posted() -> dict[str, Any]:
    """The body of the (single) POST /transfer."""
    body = next(c.request.body for c in responses.calls if c.request.method == "POST")
    assert isinstance(body, (str, bytes)), body
    posted: dict[str, Any] = json.loads(body)
    return posted


def _calls(method: str, path: str) -> int:
    return sum(
        c.request.method == method and str(c.request.url).split("?")[0].endswith(path)
        for c in responses.calls
    )


def test_submit_wait_and_per_file_outcomes(tmp_path: Path) -> None:
    sub = load_response(globus_sdk.TransferClient.get_submission_id).metadata["submission_id"]
    task = load_response(globus_sdk.TransferClient.submit_transfer).metadata["task_id"]
    _task(task, "ACTIVE", "SUCCEEDED")
    _outcomes(task)
    gt = _transfer(tmp_path)
    state, files = gt.run(_manifest())
    assert state is not None  # a day with clips has a task

    body = _posted()
    assert body["submission_id"] == sub == state.submission_id and state.task_id == task
    assert (body["sync_level"], body["verify_checksum"], body["skip_source_errors"]) == (
        SYNC_CHECKSUM,
        True,
        True,
    )
    assert (
        body["notify_on_succeeded"]
        is body["notify_on_failed"]
        is body["notify_on_inactive"]
        is False
    )
    assert body["deadline"]
    assert [i["destination_path"] for i in body["DATA"]] == [
        f"/stage/{DATE}/audio/{n}" for n in ("a.m4a", "b.mp4", "c.wav")
    ]
    assert [(f.name, f.status) for f in files] == [
        ("a.m4a", "transferred"),
        ("b.mp4", "skipped"),
        ("c.wav", "failed"),
    ]
    assert "PERMISSION_DENIED" in files[2].error
    assert files[0].checksum and files[1].checksum
    assert json.loads(gt.state_path.read_text()) == {
        "plan_id": "run-1",
        "submission_id": sub,
        "task_id": task,
    }


def test_retry_reattaches_and_never_submits_twice(tmp_path: Path) -> None:
    """The first job gives up waiting (task still ACTIVE); its retry finds the stored ids
    and only waits: no second submission id, no second POST /transfer."""
    load_response(globus_sdk.TransferClient.get_submission_id)
    task = load_response(globus_sdk.TransferClient.submit_transfer).metadata["task_id"]
    _task(task, "ACTIVE")
    with pytest.raises(GlobusTransferError, match="still ACTIVE"):
        _transfer(tmp_path, timeout_s=3).run(_manifest())
    assert _calls("POST", "/transfer") == 1
    first = json.loads((tmp_path / DATE / "transfer.globus.json").read_text())

    responses.reset()
    _task(task, "SUCCEEDED")
    _outcomes(task)
    state, files = _transfer(tmp_path).run(_manifest())
    assert state is not None  # a day with clips has a task
    assert _calls("POST", "/transfer") == 0 and _calls("GET", "/submission_id") == 0
    assert (state.submission_id, state.task_id) == (first["submission_id"], first["task_id"])
    assert len(files) == 3


def test_crash_between_storing_and_submitting_reuses_the_submission_id(tmp_path: Path) -> None:
    """Only the submission id was stored: the retry submits with that same id, which Globus
    de-duplicates (answering with the original task)."""
    gt = _transfer(tmp_path)
    stored = "11111111-2222-3333-4444-555555555555"
    gt.state_path.write_text(json.dumps({"plan_id": "run-1", "submission_id": stored}))
    task = "99999999-0000-0000-0000-000000000000"
    RegisteredResponse(
        service="transfer",
        method="POST",
        path="/v0.10/transfer",
        json={
            "DATA_TYPE": "transfer_result",
            "code": "Duplicate",
            "submission_id": stored,
            "task_id": task,
        },
    ).add()
    _task(task, "SUCCEEDED")
    _outcomes(task)
    state, _ = gt.run(_manifest())
    assert state is not None  # a day with clips has a task
    body = _posted()
    assert body["submission_id"] == stored and state.task_id == task
    assert _calls("GET", "/submission_id") == 0


def test_failed_task_fails_the_job_and_its_retry_submits_anew(tmp_path: Path) -> None:
    """task_wait would return normally on FAILED; we require SUCCEEDED. Nothing of a FAILED
    task arrived, so the retry is the one case that takes a new submission id."""
    load_response(globus_sdk.TransferClient.get_submission_id)
    task = load_response(globus_sdk.TransferClient.submit_transfer).metadata["task_id"]
    _task(task, "FAILED")
    with pytest.raises(GlobusTransferError, match="ended FAILED: PERMISSION_DENIED"):
        _transfer(tmp_path).run(_manifest())

    responses.reset()
    fresh, new_task = "77777777-0000-0000-0000-000000000000", "88888888-0000-0000-0000-000000000000"
    _task(task, "FAILED")
    RegisteredResponse(service="transfer", path="/v0.10/submission_id", json={"value": fresh}).add()
    RegisteredResponse(
        service="transfer",
        method="POST",
        path="/v0.10/transfer",
        json={"code": "Accepted", "submission_id": fresh, "task_id": new_task},
    ).add()
    _task(new_task, "SUCCEEDED")
    _outcomes(new_task)
    state, _ = _transfer(tmp_path).run(_manifest())
    assert state is not None  # a day with clips has a task
    assert (state.submission_id, state.task_id) == (fresh, new_task)
    assert _posted()["submission_id"] == fresh


def test_list_day_recurses_and_keeps_audio(tmp_path: Path) -> None:
    def ls(path: str, items: list[tuple[str, str, int]]) -> None:
        RegisteredResponse(
            service="transfer",
            path=f"/v0.10/operation/endpoint/{SRC}/ls",
            match=[responses.matchers.query_param_matcher({"path": path}, strict_match=False)],
            json={
                "DATA_TYPE": "file_list",
                "path": path,
                "DATA": [
                    {"DATA_TYPE": "file", "name": n, "type": t, "size": s} for n, t, s in items
                ],
            },
        ).add()

    ls(f"/src/{DATE}/", [("a.m4a", "file", 5), ("sub", "dir", 0), ("notes.txt", "file", 3)])
    ls(f"/src/{DATE}/sub/", [("b.MP4", "file", 7)])
    clips = list_day(globus_sdk.TransferClient(), SRC, "/src", DATE)
    assert [(c.clip_id, c.name, c.source_path, c.size) for c in clips] == [
        (f"{DATE}/a.m4a", "a.m4a", f"/src/{DATE}/a.m4a", 5),
        (f"{DATE}/sub/b.MP4", "sub__b.MP4", f"/src/{DATE}/sub/b.MP4", 7),
    ]


def test_credentials_file_must_be_private(tmp_path: Path) -> None:
    creds = tmp_path / "globus.json"
    creds.write_text(json.dumps({"client_id": "id", "client_secret": "secret"}))
    os.chmod(creds, 0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        load_credentials(str(creds))
    os.chmod(creds, 0o600)
    assert load_credentials(str(creds)) == ("id", "secret")
