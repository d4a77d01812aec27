"""Pure parts of the SLURM plugin: state mapping, output parsing, retry planning, backoff."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any, cast

import pytest

from hpc_pipeline.hooks.slurm import SlurmHook
from hpc_pipeline.sensors.slurm import parse_job_ids
from hpc_pipeline.slurm.arrays import index_spec, parse_array_size
from hpc_pipeline.slurm.jobs import (
    JobState,
    expand_job_id,
    job_name,
    latest_runs,
    log_path,
    reconcile,
)
from hpc_pipeline.slurm.parse import parse_sacct, parse_squeue
from hpc_pipeline.slurm.states import Verdict, verdict
from hpc_pipeline.slurm.verdict import event_payload, failure_message, judge, plan
from hpc_pipeline.triggers.backoff import next_interval
from hpc_pipeline.triggers.slurm import SlurmJobTrigger
from support import job_row as _job

S = "\x1f"


@pytest.mark.parametrize(
    "state,expected",
    [
        *[
            (s, Verdict.WAIT)
            for s in (
                "PENDING",
                "CONFIGURING",
                "RUNNING",
                "COMPLETING",
                "SUSPENDED",
                "REQUEUED",
                "RESIZING",
                "STOPPED",
                "REQUEUE_HOLD",
            )
        ],
        ("COMPLETED", Verdict.SUCCESS),
        *[
            (s, Verdict.FAILURE)
            for s in (
                "FAILED",
                "CANCELLED",
                "CANCELLED by 1001",
                "TIMEOUT",
                "OUT_OF_MEMORY",
                "NODE_FAIL",
                "BOOT_FAIL",
                "DEADLINE",
                "PREEMPTED",
            )
        ],
        ("WEIRD_NEW_STATE", Verdict.UNKNOWN),
        ("", Verdict.UNKNOWN),
    ],
)
def test_state_mapping_is_total(state: str, expected: Verdict) -> None:
    assert verdict(state) is expected


def test_expand_job_ids() -> None:
    assert expand_job_id("12") == [("12", None)]
    assert expand_job_id("12_3") == [("12", 3)]
    assert expand_job_id("12_[0-3%2]") == [("12", i) for i in range(4)]
    assert expand_job_id("12_[1,5-6]") == [("12", 1), ("12", 5), ("12", 6)]


def test_parse_sacct_and_squeue() -> None:
    t0, t1 = "2026-12-02T05:55:01", "2026-12-02T05:57:30"
    sacct = (
        f"10{S}FAILED{S}4:0{S}vm{S}2{S}billing=1,cpu=1,gres/gpu=1,mem=1G,node=1{S}{t0}{S}{t1}"
        f"{S}None{S}a b\n"
        f"11_[2-3%2]{S}PENDING{S}0:0{S}None assigned{S}0{S}{S}{t0}{S}Unknown"
        f"{S}JobArrayTaskLimit{S}arr\n"
        f"11_1{S}CANCELLED by 1001{S}0:15{S}vm{S}7{S}cpu=1{S}{t0}{S}None{S}None{S}arr\n"
    )
    jobs = parse_sacct(sacct)
    assert [(j.job_id, j.state, j.node, j.reason) for j in jobs] == [
        ("10", "FAILED", "vm", ""),
        ("11_2", "PENDING", None, "JobArrayTaskLimit"),
        ("11_3", "PENDING", None, "JobArrayTaskLimit"),
        ("11_1", "CANCELLED", "vm", ""),
    ]
    assert jobs[0].gpus == 1 and jobs[0].elapsed_s == 2 and jobs[0].name == "a b"
    assert (jobs[0].submit_time, jobs[0].start_time) == (t0, t1)
    assert (jobs[1].submit_time, jobs[1].start_time, jobs[3].start_time) == (t0, None, None)
    squeue = (
        f"7_1{S}FAILED{S}768{S}vm{S}1:02:03{S}cpu=1{S}/h/x-%A_%a.out{S}{t0}{S}{t1}{S}NonZeroExitCode{S}n\n"
        f"8{S}PENDING{S}0{S}{S}0:00{S}cpu=1{S}/h/y.out{S}{t0}{S}{t1}{S}Priority{S}m\n"
    )
    job, pending = parse_squeue(squeue)
    assert (job.exit_code, job.elapsed_s, job.stdout, job.array_index, job.reason) == (
        "3:0",
        3723,
        "/h/x-%A_%a.out",
        1,
        "NonZeroExitCode",
    )
    assert (job.submit_time, job.start_time, pending.start_time) == (t0, t1, None)
    assert pending.reason == "Priority"


def test_newest_job_per_name_and_index_wins() -> None:
    jobs = [_job("5", 0, "COMPLETED"), _job("5", 1, "FAILED"), _job("9", 1, "COMPLETED")]
    assert [j.job_id for j in latest_runs(jobs)] == ["5_0", "9_1"]
    assert judge(["5", "9"], jobs)[0] is Verdict.SUCCESS
    assert judge(["5"], jobs[:2])[0] is Verdict.FAILURE
    assert judge(["5", "77"], jobs)[2] is not None  # an id nobody knows: degraded poll
    # Independent jobs (other names) never hide each other's failure.
    independent = [_job("5", None, "FAILED", "a"), _job("6", None, "COMPLETED", "b")]
    assert judge(["5", "6"], independent)[0] is Verdict.FAILURE
    assert failure_message([_job(str(i), None, "FAILED") for i in range(25)]).endswith("and 5 more")


def test_no_verdict_on_an_array_until_every_index_is_reported() -> None:
    """A poll that misses index 1 (accounting lag under load) must not pass the array."""
    seen = [_job("34", 0, "COMPLETED"), _job("34", 2, "COMPLETED")]
    overall, _, why = judge(["34"], seen, array_size=3)
    assert overall is Verdict.UNKNOWN and why == "array indices not reported yet: [1]"
    assert judge(["34"], seen + [_job("34", 1, "FAILED")], array_size=3)[0] is Verdict.FAILURE
    retried = seen + [_job("34", 1, "FAILED"), _job("40", 1, "COMPLETED")]
    assert judge(["34", "40"], retried, array_size=3)[0] is Verdict.SUCCESS


def test_controller_rows_win_but_accounting_fills_its_gaps() -> None:
    accounting = [
        _job("34", None, "COMPLETED"),
        _job("34", 1, "FAILED"),
        _job("30", None, "FAILED"),
    ]
    controller = [_job("34", 0, "COMPLETED"), _job("34", 2, "RUNNING")]
    assert sorted((j.job_id, j.state) for j in reconcile(accounting, controller)) == [
        ("30", "FAILED"),
        ("34_0", "COMPLETED"),
        ("34_1", "FAILED"),
        ("34_2", "RUNNING"),
    ]


def test_query_asks_the_controller_for_an_index_accounting_lacks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """sacct answering without index 1 of a 3-index array: one squeue call fills it in."""
    sacct = "".join(
        f"34_{i}{S}COMPLETED{S}0:0{S}vm{S}1{S}cpu=1{S}{S}{S}None{S}arr\n" for i in (0, 2)
    )
    squeue = f"34_1{S}FAILED{S}1024{S}vm{S}0:01{S}cpu=1{S}/h/x.out{S}{S}{S}None{S}arr\n"
    calls: list[str] = []

    def run(self: SlurmHook, argv: list[str], timeout: float | None = None) -> tuple[int, str, str]:
        calls.append(argv[0])
        return 0, sacct if argv[0] == "sacct" else squeue, ""

    monkeypatch.setattr(SlurmHook, "run", run)
    hook = SlurmHook.__new__(SlurmHook)  # no connection: run() above answers
    jobs = hook.query(["34"], array_size=3)
    assert calls == ["sacct", "squeue"]
    assert sorted((j.job_id, j.state) for j in jobs) == [
        ("34_0", "COMPLETED"),
        ("34_1", "FAILED"),
        ("34_2", "COMPLETED"),
    ]
    calls.clear()
    for size in (None, 1):  # nothing expected that accounting lacks: sacct alone
        calls.clear()
        assert len(hook.query(["34"], array_size=size)) == 2 and calls == ["sacct"]


def test_query_asks_the_controller_about_a_job_requeued_after_a_node_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Accounting shows the ended attempt (NODE_FAIL) of a job SLURM requeued; the
    controller's PENDING wins, so the watch goes on. A plain FAILED needs no squeue."""
    answers = {
        "sacct": f"34_0{S}NODE_FAIL{S}0:0{S}vm{S}9{S}cpu=1{S}{S}{S}None{S}arr\n",
        "squeue": f"34_0{S}PENDING{S}0{S}{S}0:00{S}cpu=1{S}/h/x.out{S}{S}{S}BeginTime{S}arr\n",
    }
    calls: list[str] = []

    def run(self: SlurmHook, argv: list[str], timeout: float | None = None) -> tuple[int, str, str]:
        calls.append(argv[0])
        return 0, answers[argv[0]], ""

    monkeypatch.setattr(SlurmHook, "run", run)
    hook = SlurmHook.__new__(SlurmHook)
    assert [(j.job_id, j.state) for j in hook.query(["34"], array_size=1)] == [("34_0", "PENDING")]
    assert calls == ["sacct", "squeue"]
    # not requeued (--no-requeue): the controller says NODE_FAIL too
    answers["squeue"] = f"34_0{S}NODE_FAIL{S}0{S}vm{S}0:09{S}cpu=1{S}/h/x.out{S}{S}{S}None{S}arr\n"
    assert [j.state for j in hook.query(["34"], array_size=1)] == ["NODE_FAIL"]
    calls.clear()
    answers["sacct"] = answers["sacct"].replace("NODE_FAIL", "FAILED")
    assert [j.state for j in hook.query(["34"], array_size=1)] == ["FAILED"] and calls == ["sacct"]


def test_plan_resubmits_only_failed_or_missing_indices() -> None:
    jobs = [
        _job("5", 0, "COMPLETED"),
        _job("5", 1, "FAILED"),
        _job("5", 2, "RUNNING"),
        _job("5", 4, "TIMEOUT"),
    ]
    assert plan(jobs, 6) == (["5"], "1,3-5", True)
    assert plan([], 3) == ([], "0-2", True)
    assert plan([_job("5", None, "RUNNING")], None) == (["5"], None, False)
    assert plan([_job("5", None, "COMPLETED")], None) == (["5"], None, False)
    assert plan([_job("6", None, "FAILED"), _job("5", None, "COMPLETED")], None) == ([], None, True)


def test_small_helpers() -> None:
    assert (
        job_name("audio", "process", "2026-01-02", "manual__x")
        == "audio-process-2026-01-02-" + __import__("hashlib").sha1(b"manual__x").hexdigest()[:8]
    )
    assert index_spec([5, 0, 1, 2, 7]) == "0-2,5,7"
    assert parse_array_size("0") == 0 and parse_array_size(None) is None
    assert parse_job_ids("['12', '13_2']") == ["12", "13_2"] and parse_job_ids(7) == ["7"]
    assert log_path("/l/x-%A_%a.out", _job("9", 3, "FAILED")) == "/l/x-9_3.out"
    assert log_path("/l/x-%j.out", _job("9", None, "FAILED")) == "/l/x-9.out"


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    first = [next_interval(0, 2, 30) for _ in range(50)]
    assert min(first) >= 1.6 and max(first) <= 2.4 and len(set(first)) > 1
    assert all(next_interval(40, 2, 30) <= 36 for _ in range(50))
    assert next_interval(3, 2, 30) > 2.4  # 2 * 1.5**3 * 0.8


def test_trigger_round_trips_through_serialize() -> None:
    trig = SlurmJobTrigger(
        ssh_conn_id="x", job_ids=["1"], poll_interval=2, max_poll_interval=30, array_size=3
    )
    cls, kwargs = trig.serialize()
    assert cls == "hpc_pipeline.triggers.slurm.SlurmJobTrigger" and SlurmJobTrigger(
        **kwargs
    ).job_ids == ["1"]
    assert SlurmJobTrigger(**kwargs).array_size == 3


class _FakeHook:
    """Stands in for SlurmHook inside the trigger: scripted query results / errors."""

    def __init__(self, script: list[Any]) -> None:
        self.script = script
        self.closed = 0

    def query(self, job_ids: list[str], array_size: int | None = None) -> list[JobState]:
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, BaseException):
            raise step
        return step

    def close(self) -> None:
        self.closed += 1


def _run_trigger(script: list[Any], outage_timeout: float) -> tuple[dict[str, Any], _FakeHook]:
    fake = _FakeHook(script)
    trig = SlurmJobTrigger(
        ssh_conn_id="x",
        job_ids=["5"],
        poll_interval=0.01,
        max_poll_interval=0.02,
        outage_timeout=outage_timeout,
    )
    trig._hook = lambda: cast(SlurmHook, fake)  # type: ignore[method-assign]  # scripted hook

    async def first_event() -> dict[str, Any]:
        async for event in trig.run():
            return event.payload
        raise AssertionError("no event")

    return asyncio.run(first_event()), fake


def test_trigger_rides_out_short_outages() -> None:
    event, fake = _run_trigger(
        [
            OSError("refused"),
            EOFError(),
            [_job("5", None, "RUNNING")],
            [_job("5", None, "COMPLETED")],
        ],
        outage_timeout=30,
    )
    assert event["status"] == "success" and fake.closed >= 2  # reconnected after each error


def test_trigger_fails_after_the_outage_window() -> None:
    event, _ = _run_trigger([OSError("refused")], outage_timeout=0.2)
    assert event["status"] == "error" and "refused" in event["message"]
    event, _ = _run_trigger([[_job("5", None, "BRAND_NEW")]], outage_timeout=0.2)
    assert event["status"] == "error" and "BRAND_NEW" in event["message"]


def test_trigger_failure_event_names_failed_indices() -> None:
    event, _ = _run_trigger([[_job("5", 0, "COMPLETED"), _job("5", 1, "OUT_OF_MEMORY")]], 30)
    assert event["status"] == "failed" and event["message"] == "5_1 OUT_OF_MEMORY exit=0:0 node=vm"
    assert event["failed_indices"] == [1] and event["counts"] == {
        "COMPLETED": 1,
        "OUT_OF_MEMORY": 1,
    }
    assert [t["array_index"] for t in event["shown"]] == [1]  # the failed index's log is shown


def test_event_size_does_not_grow_with_the_array() -> None:
    """A row per index made 113 KB at 400 indices; counts and failed indices stay small.
    The task still names every failed index and shows the first SHOWN_JOBS logs."""
    rows = [_job("5", i, "FAILED" if i % 20 == 7 else "COMPLETED") for i in range(400)]
    event = event_payload(["5"], "failed", failure_message(rows), rows, "/l/x-%A_%a.out")
    assert event["counts"] == {"COMPLETED": 380, "FAILED": 20}
    assert event["failed_indices"] == list(range(7, 400, 20))
    assert [t["array_index"] for t in event["shown"]] == [7, 27, 47, 67, 87]
    assert len(json.dumps(event)) < 4000
    ok = event_payload(["5"], "success", "done", [replace(r, state="COMPLETED") for r in rows])
    assert (
        ok["counts"] == {"COMPLETED": 400} and ok["failed_indices"] == [] and len(ok["shown"]) == 5
    )
    assert len(json.dumps(ok)) < 3000
