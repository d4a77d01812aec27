"""The results DB on a real PostgreSQL: migrations, idempotent loads, upgrade rules."""

from __future__ import annotations

import psycopg
import pytest

from audio_hpc.contract import Clip, ClipResult, Manifest, Shard
from hpc_pipeline.hooks.results_db import DayLoad, JobRecord, ResultsDbHook

DAY = "2024-03-05"


def _result(
    clip: str,
    status: str = "ok",
    when: str = "2024-03-06T01:00:00+00:00",
    text: str = "hello world",
    kind: str = "",
) -> ClipResult:
    return ClipResult(
        clip_id=f"{DAY}/{clip}",
        date=DAY,
        status=status,
        engine="whisperx",
        model="tiny.en",
        language="en",
        duration_s=12.5,
        text=text if status == "ok" else "",
        segments=[{"start": 0.0, "end": 1.2, "text": text}] if status == "ok" else [],
        error_kind=kind,
        error="boom" if kind else "",
        job_id="7",
        array_index=0,
        node="vm",
        finished_at=when,
    )


def _load(results: list[ClipResult], jobs: list[JobRecord] | None = None) -> DayLoad:
    clips = [Clip(r.clip_id, r.clip_id.split("/")[1], "/src/" + r.clip_id, 10) for r in results]
    manifest = Manifest(
        date=DAY, plan_id="p1", source="/src", shards=[Shard(0, clips)], listed=len(clips)
    )
    return DayLoad(
        day=DAY,
        plan_id="p1",
        dag_run_id="manual__1",
        manifest=manifest,
        results=results,
        jobs=jobs or [],
    )


def _snapshot(dsn: str) -> dict[str, list]:
    with psycopg.connect(dsn) as conn:
        return {
            t: conn.execute(f"SELECT {cols} FROM {t} ORDER BY 1, 2").fetchall()
            for t, cols in {
                "audio_clips": "clip_id, status, error_kind, duration_s, finished_at",
                "transcripts": "clip_id, text, segments, recorded_at",
                "slurm_jobs": "job_id, array_index, state, gpu_seconds, recorded_at",
                "audio_days": "day, clips_ok, clips_failed, failed_by_reason, audio_seconds, "
                "gpu_seconds",
            }.items()
        }


@pytest.fixture
def hook(results_db: str) -> ResultsDbHook:
    hook = ResultsDbHook("audio_results_db")
    assert hook.migrate() == [
        "0001_initial",
        "0002_queue_wait",
        "0003_day_claims",
        "0004_alerts_sent",
        "0005_transcript_search",
        "0006_transcripts_day_brin",
    ]
    return hook


def test_migrations_apply_once(hook: ResultsDbHook) -> None:
    assert hook.migrate() == []


def test_reloading_a_day_changes_nothing(hook: ResultsDbHook, results_db: str) -> None:
    jobs = [
        JobRecord("audio", "40", 0, "COMPLETED", "0:0", 100.0, "vm", 1),
        JobRecord("audio", "40", 1, "COMPLETED", "0:0", 50.0, "vm", 1),
    ]
    load = _load(
        [
            _result("a.mp4"),
            _result("b.mp4", "failed", kind="corrupt"),
            _result("c.mp4", "failed", kind="silent"),
        ],
        jobs,
    )
    summary = hook.record_day(load)
    assert (summary["clips_ok"], summary["clips_failed"]) == (1, 2)
    assert summary["failed_by_reason"] == {"corrupt": 1, "silent": 1}
    assert summary["gpu_seconds"] == 150.0
    assert summary["real_time_factor"] == pytest.approx(12.5 / 150.0)
    before = _snapshot(results_db)
    hook.record_day(load)
    assert _snapshot(results_db) == before


def test_failed_clip_that_succeeds_later_is_updated(hook: ResultsDbHook, results_db: str) -> None:
    hook.record_day(_load([_result("a.mp4", "failed", kind="corrupt")]))
    assert hook.done_clips(DAY) == {f"{DAY}/a.mp4": "failed"}
    hook.record_day(_load([_result("a.mp4", when="2024-03-07T00:00:00+00:00", text="fixed")]))
    assert hook.done_clips(DAY) == {f"{DAY}/a.mp4": "ok"}
    rows = _snapshot(results_db)["transcripts"]
    assert [r[1] for r in rows] == ["fixed"]
    assert (hook.day_summary(DAY) or {}).get("status") == "complete"


def test_failure_never_replaces_a_transcript(hook: ResultsDbHook, results_db: str) -> None:
    hook.record_day(_load([_result("a.mp4")]))
    hook.record_day(
        _load(
            [_result("a.mp4", "failed", when="2024-03-09T00:00:00+00:00", kind="transfer_failed")]
        )
    )
    assert hook.done_clips(DAY) == {f"{DAY}/a.mp4": "ok"}
    assert [r[1] for r in _snapshot(results_db)["transcripts"]] == ["hello world"]


def test_hostile_text_is_stored_verbatim(hook: ResultsDbHook, results_db: str) -> None:
    nasty = 'it\'s a "test"; DROP TABLE audio_clips; -- \\ \t tab é'
    hook.record_day(_load([_result("we'ird; name.mp4", text=nasty)]))
    assert [r[1] for r in _snapshot(results_db)["transcripts"]] == [nasty]
    assert hook.done_clips(DAY) == {f"{DAY}/we'ird; name.mp4": "ok"}


def test_planned_clip_without_outcome_makes_the_day_incomplete(hook: ResultsDbHook) -> None:
    load = _load([_result("a.mp4"), _result("b.mp4")])
    load.results = list(load.results)[:1]  # b.mp4 was planned but its shard never reported
    summary = hook.record_day(load)
    assert (summary["status"], summary["clips_missing"], summary["clips_ok"]) == (
        "incomplete",
        1,
        1,
    )


def test_last_complete_day_is_bounded_by_the_day_asked(hook: ResultsDbHook) -> None:
    assert hook.last_complete_day(DAY) is None
    hook.record_day(_load([_result("a.mp4")]))
    assert (hook.last_complete_day(DAY), hook.last_complete_day("2024-03-04")) == (DAY, None)
    assert hook.last_complete_day("2025-01-01") == DAY
