"""Pure parts of live progress, alert rules, the run note and the Asset's extra."""

from __future__ import annotations

import json
from typing import Any, cast

from audio_hpc.contract import FAILED_LINE_MARK, ClipResult
from hpc_pipeline.alerts import Problem, day_alert, day_problems, failed_ratio
from hpc_pipeline.assets import TRANSCRIPTS, transcripts_extra
from hpc_pipeline.config import AlertConfig, load_config
from hpc_pipeline.hooks.slurm import SlurmHook
from hpc_pipeline.run_report import status_page_link, summary_line
from hpc_pipeline.slurm.jobs import JobState
from hpc_pipeline.slurm.parse import ProgressProbe, parse_progress_probe
from hpc_pipeline.slurm.progress import (
    ClipCounts,
    ShardLines,
    array_counts,
    format_progress,
    pending_without_reason,
    with_reasons,
)
from hpc_pipeline.triggers.slurm import SlurmJobTrigger


def _job(idx: int | None, state: str, reason: str = "") -> JobState:
    return JobState(
        job_id="9" if idx is None else f"9_{idx}",
        array_job_id="9",
        array_index=idx,
        name="n",
        state=state,
        exit_code="0:0",
        node=None,
        elapsed_s=0,
        alloc_tres="",
        gpus=0,
        reason=reason,
    )


def test_progress_line_counts_indices_by_state_and_pending_reason() -> None:
    tasks = [
        _job(0, "COMPLETED"),
        _job(1, "FAILED"),
        _job(2, "RUNNING"),
        _job(3, "PENDING", "JobArrayTaskLimit"),
        _job(4, "PENDING", "JobArrayTaskLimit"),
        _job(5, "PENDING", "Priority"),
    ]
    counts = array_counts(tasks, size=7)
    assert counts.pending == {"JobArrayTaskLimit": 2, "Priority": 1, "unlisted": 1}
    assert format_progress(counts, ClipCounts(done=230, failed=4, total=400)) == (
        "7 indices: pending 4 (2 JobArrayTaskLimit, 1 Priority, 1 unlisted), running 1, done 1, "
        "failed 1 | clips 230/400 done (57%), 4 failed"
    )
    assert format_progress(array_counts([_job(None, "PENDING")])) == (
        "1 job: pending 1 (1 no reason reported), running 0, done 0, failed 0"
    )
    assert array_counts([_job(0, "SUSPENDED")]).pending == {"SUSPENDED": 1}


def test_progress_probe_output_is_parsed_by_section() -> None:
    us = "\x1f"
    text = (
        f"@@squeue\n9_1{us}JobArrayTaskLimit\n9_2{us}Dependency\n12{us}None\n"
        f"9_3{us}(null)\n@@rc 0\n@@count\n8 1 /s/res ults/shard-0000.jsonl\n"
        "3 0 /s/res ults/shard-0001.jsonl\n@@rc 0\n"
    )
    assert parse_progress_probe(text) == ProgressProbe(
        reasons={"9_1": "JobArrayTaskLimit", "9_2": "Dependency"},
        counts={"shard-0000.jsonl": (8, 1), "shard-0001.jsonl": (3, 0)},
        squeue_rc=0,
        count_rc=0,
    )
    # squeue failed (job purged), nothing counted yet; a section cut short keeps its lines
    assert parse_progress_probe("@@squeue\n@@rc 1\n@@count\n@@rc 0\n") == ProgressProbe(
        reasons={}, counts={}, squeue_rc=1, count_rc=0
    )
    assert parse_progress_probe(f"@@squeue\n9_1{us}Priority\n") == ProgressProbe(
        reasons={"9_1": "Priority"}, counts=None, squeue_rc=None, count_rc=None
    )


def test_pending_reasons_fill_only_what_accounting_left_empty() -> None:
    tasks = [_job(0, "RUNNING"), _job(1, "PENDING"), _job(2, "PENDING", "Priority")]
    assert pending_without_reason(tasks) == ["9"]
    assert pending_without_reason(tasks[:1] + tasks[2:]) == []
    filled = with_reasons(tasks, {"9_1": "JobArrayTaskLimit", "9_2": "Resources", "9_0": "X"})
    assert [j.reason for j in filled] == ["", "JobArrayTaskLimit", "Priority"]
    assert array_counts(filled).pending == {"JobArrayTaskLimit": 1, "Priority": 1}


def test_shard_lines_reread_only_files_that_can_grow() -> None:
    shards = ShardLines(total=20)
    first = [_job(0, "COMPLETED"), _job(1, "RUNNING"), _job(2, "PENDING")]
    assert shards.to_read(first) is None  # first read: every shard's file
    shards.record(first, None, {"shard-0000.jsonl": (8, 1), "shard-0001.jsonl": (3, 0)})
    assert shards.clips() == ClipCounts(done=11, failed=1, total=20)
    assert shards.to_read(first) == ["shard-0001.jsonl"]  # shard 0 is final, 2 waits
    later = [_job(0, "COMPLETED"), _job(1, "COMPLETED"), _job(2, "RUNNING")]
    names = shards.to_read(later)
    assert names == ["shard-0001.jsonl", "shard-0002.jsonl"]
    shards.record(later, names, {"shard-0001.jsonl": (8, 2)})  # shard 2 has no file yet
    assert shards.clips() == ClipCounts(done=16, failed=3, total=20)
    assert shards.to_read([_job(0, "COMPLETED"), _job(1, "COMPLETED"), _job(2, "PENDING")]) == []


def test_failed_line_mark_matches_only_failed_result_lines() -> None:
    failed = ClipResult(
        clip_id="d/a.m4a",
        date="d",
        status="failed",
        error_kind="corrupt",
        error='said "status": "failed"',
    ).to_line()
    ok = ClipResult(clip_id="d/b.m4a", date="d", status="ok", text='"status": "failed"').to_line()
    assert FAILED_LINE_MARK in failed and FAILED_LINE_MARK not in ok


def test_trigger_with_progress_is_rebuilt_from_its_serialization() -> None:
    trig = SlurmJobTrigger(
        ssh_conn_id="x", job_ids=["1"], array_size=3, results_dir="/r/p", clips_total=25
    )
    path, kwargs = trig.serialize()
    again = SlurmJobTrigger(**json.loads(json.dumps(kwargs)))
    assert path == "hpc_pipeline.triggers.slurm.SlurmJobTrigger"
    assert (again.results_dir, again.clips_total, again.array_size) == ("/r/p", 25, 3)
    assert again._shards is not None and again._shards.total == 25


def _summary(status: str, ok: int, failed: int, missing: int = 0) -> dict:
    return {
        "day": "2024-01-15",
        "status": status,
        "clips_listed": ok + failed + missing,
        "clips_planned": ok + failed + missing,
        "clips_skipped": 0,
        "clips_ok": ok,
        "clips_failed": failed,
        "clips_missing": missing,
        "failed_by_reason": {"corrupt": failed} if failed else {},
        "audio_seconds": 12.5,
        "gpu_seconds": 3,
    }


def test_alert_rules() -> None:
    cfg = AlertConfig(max_failed_ratio=0.1, days_without_complete=3)
    day = "2024-01-15"
    assert day_problems(day, _summary("complete", 10, 0), day, cfg) == []  # a clean day
    assert day_problems(day, _summary("partial", 95, 5), "2024-01-14", cfg) == []  # 5 % <= 10 %
    (partial,) = day_problems(day, _summary("partial", 6, 4), "2024-01-14", cfg)
    assert partial.kind == "partial"
    assert partial.text.startswith("day 2024-01-15 is partial: 4 clips failed (40.0% > 10.0%")
    assert "corrupt 4" in partial.text
    (missing,) = day_problems(day, _summary("incomplete", 6, 0, 2), "2024-01-13", cfg)
    assert missing.kind == "incomplete" and "2 planned clips have no result" in missing.text
    stale = day_problems(day, _summary("partial", 99, 1), "2024-01-12", cfg)
    assert stale == [
        Problem(
            "no_complete_day",
            "no complete day in the 3 days 2024-01-13..2024-01-15 (last complete day: 2024-01-12)",
        )
    ]
    assert "never" in day_problems(day, None, None, cfg)[0].text
    assert day_problems(day, None, None, AlertConfig(days_without_complete=0)) == []
    assert failed_ratio(_summary("partial", 6, 4)) == 0.4
    assert day_alert(day, "r", [], "line", "/l") is None
    alert = day_alert(day, "r", [partial], "Day x", "/audio-pipeline/?day=2024-01-15")
    assert alert is not None and alert.subject.startswith("[audio-pipeline] 2024-01-15: day ")
    assert "/audio-pipeline/?day=2024-01-15" in alert.body


def test_note_and_asset_extra() -> None:
    summary = _summary("partial", 6, 4)
    assert summary_line("2024-01-15", summary, []) == (
        "Day 2024-01-15 partial: ok 6, failed 4 (corrupt 4), missing 0"
    )
    assert summary_line("2024-01-16", None, ["master"]) == (
        "Day 2024-01-16 not recorded; failed steps: master"
    )
    assert status_page_link("2024-01-15", "http://h:8080/airflow/") == (
        "/airflow/audio-pipeline/?day=2024-01-15"
    )
    assert status_page_link("2024-01-15") == "/audio-pipeline/?day=2024-01-15"
    extra = transcripts_extra(summary, "manual__x")
    assert json.loads(json.dumps(extra)) == extra
    assert (extra["day"], extra["status"], extra["clips_ok"], extra["failed_by_reason"]) == (
        "2024-01-15",
        "partial",
        6,
        {"corrupt": 4},
    )
    assert TRANSCRIPTS.uri == "audio-pipeline://transcripts/"  # as Airflow normalizes it


def test_alert_config_parses_from_json(tmp_path) -> None:
    path = tmp_path / "site.json"
    path.write_text(
        json.dumps({"alerts": {"to": ["a@x.org"], "max_failed_ratio": 0.2}, "api_conn_id": "api"})
    )
    cfg = load_config(str(path))
    assert cfg.alerts.to == ("a@x.org",) and cfg.alerts.max_failed_ratio == 0.2
    assert cfg.alerts.smtp_conn_id == "smtp_default" and cfg.api_conn_id == "api"


class _CountingHook:
    """Stands in for SlurmHook: scripted polls, scripted probe answers (pending reasons and
    result-line counts, the way the controller and ``find``/``awk`` give them), calls recorded."""

    def __init__(self, polls: list[list[JobState]], probes: list[ProgressProbe]) -> None:
        self.polls, self.probes = polls, probes
        self.calls: list[tuple[str, Any]] = []

    def query(self, job_ids: list[str], array_size: int | None = None) -> list[JobState]:
        self.calls.append(("query", None))
        return self.polls.pop(0)

    def progress_probe(
        self, pending: list[str], directory: str | None, names: list[str] | None, marker: str
    ) -> ProgressProbe:
        self.calls.append(("probe", (pending, directory is not None and names)))
        probe = self.probes.pop(0)
        return ProgressProbe(probe.reasons, probe.counts if directory is not None else None)

    def close(self) -> None:
        pass


async def _first_event(trig: SlurmJobTrigger) -> dict:
    async for event in trig.run():
        return event.payload
    raise AssertionError("no event")


def _progress_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("Progress: ")]


def _fast_trigger(fake: _CountingHook, **kw) -> SlurmJobTrigger:
    import logging

    trig = SlurmJobTrigger(
        ssh_conn_id="x", job_ids=["9"], poll_interval=0.01, max_poll_interval=0.01, **kw
    )
    # the trigger's hook and logger replaced by test doubles: a scripted hook, and a stdlib
    # logger that caplog sees
    trig._hook = lambda: cast(SlurmHook, fake)  # type: ignore[method-assign]
    trig._log = logging.getLogger("test.progress")  # type: ignore[assignment]
    return trig


def test_trigger_logs_progress_on_change_within_the_call_budget(caplog) -> None:
    import asyncio
    import logging

    # sacct leaves pending indices without a reason (polls 1 and 3); the probe's squeue
    # part supplies it. Poll 2 came from squeue (reasons given): no probe at all.
    polls = [
        [_job(0, "PENDING"), _job(1, "PENDING")],
        [_job(0, "PENDING", "Priority"), _job(1, "PENDING", "Priority")],
        [_job(0, "RUNNING"), _job(1, "PENDING")],
        [_job(0, "COMPLETED"), _job(1, "RUNNING")],
        [_job(0, "COMPLETED"), _job(1, "COMPLETED")],
    ]
    probes = [
        ProgressProbe({"9_0": "Priority", "9_1": "Priority"}, {}),
        ProgressProbe({"9_1": "JobArrayTaskLimit"}, {"shard-0000.jsonl": (3, 1)}),
        ProgressProbe({}, {"shard-0000.jsonl": (8, 1), "shard-0001.jsonl": (1, 0)}),
        ProgressProbe({}, {"shard-0001.jsonl": (4, 0)}),
    ]
    fake = _CountingHook(polls, probes)
    trig = _fast_trigger(fake, array_size=2, results_dir="/r/p", clips_total=12)
    with caplog.at_level(logging.INFO):
        assert asyncio.run(_first_event(trig))["status"] == "success"
    # One query per poll; at most one probe, only when an index pends without a reason or
    # a shard runs or ended.
    assert [c for c, _ in fake.calls] == [
        "query",
        "probe",
        "query",
        "query",
        "probe",
        "query",
        "probe",
        "query",
        "probe",
    ]
    assert [args for c, args in fake.calls if c == "probe"] == [
        (["9"], None),  # the first count covers every shard
        (["9"], ["shard-0000.jsonl"]),
        ([], ["shard-0000.jsonl", "shard-0001.jsonl"]),
        ([], ["shard-0001.jsonl"]),
    ]
    assert _progress_lines(caplog) == [
        "Progress: 2 indices: pending 2 (2 Priority), running 0, done 0, failed 0 | clips 0/12 "
        "done (0%), 0 failed",
        "Progress: 2 indices: pending 1 (1 JobArrayTaskLimit), running 1, done 0, failed 0 | "
        "clips 3/12 done (25%), 1 failed",
        "Progress: 2 indices: pending 0, running 1, done 1, failed 0 | clips 9/12 done (75%), "
        "1 failed",
        "Progress: 2 indices: pending 0, running 0, done 2, failed 0 | clips 12/12 done (100%), "
        "1 failed",
    ]


def test_trigger_without_results_asks_only_for_pending_reasons(caplog) -> None:
    import asyncio
    import logging

    polls = [[_job(None, "PENDING")], [_job(None, "RUNNING")], [_job(None, "COMPLETED")]]
    fake = _CountingHook(polls, [ProgressProbe({"9": "Dependency"}, None)])
    with caplog.at_level(logging.INFO):
        assert asyncio.run(_first_event(_fast_trigger(fake)))["status"] == "success"
    assert fake.calls == [
        ("query", None),
        ("probe", (["9"], False)),
        ("query", None),
        ("query", None),
    ]
    assert _progress_lines(caplog) == [
        "Progress: 1 job: pending 1 (1 Dependency), running 0, done 0, failed 0",
        "Progress: 1 job: pending 0, running 1, done 0, failed 0",
        "Progress: 1 job: pending 0, running 0, done 1, failed 0",
    ]
