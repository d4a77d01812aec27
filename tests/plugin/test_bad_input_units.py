"""Pure parts of bad input and cluster faults: sbatch's refusals, an unreachable login node,
jobs SLURM will never start (the pending limit), a node lost under a job, accounting down,
and the status page's per-node counts."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from dataclasses import replace
from typing import Any, cast

import paramiko
import pytest

from hpc_pipeline.hooks.slurm import SlurmHook, connect_failure
from hpc_pipeline.monitoring.models import node_counts
from hpc_pipeline.slurm.errors import LoginUnreachable, sbatch_refusal
from hpc_pipeline.slurm.jobs import JobState, reconcile
from hpc_pipeline.slurm.pending import (
    PendingClock,
    Stuck,
    blocked_because,
    blocked_notes,
    stuck_message,
)
from hpc_pipeline.slurm.verdict import (
    event_payload,
    failure_message,
    node_loss_notes,
    requeued,
    with_lost_attempts,
)
from hpc_pipeline.triggers.slurm import SlurmJobTrigger
from support import job_row

S = "\x1f"


def _pending(jid: str, idx: int | None, reason: str) -> JobState:
    return replace(job_row(jid, idx, "PENDING"), node=None, reason=reason)


@pytest.mark.parametrize(
    "stderr,reason",
    [
        (
            "sbatch: error: invalid partition specified: nope\n"
            "sbatch: error: Batch job submission failed: Invalid partition name specified",
            "Invalid partition name specified",
        ),
        (
            "sbatch: error: Batch job submission failed: Requested node configuration is not "
            "available",
            "Requested node configuration is not available",
        ),
        (
            "sbatch: error: Batch job submission failed: Invalid generic resource (gres) "
            "specification",
            "Invalid generic resource (gres) specification",
        ),
        (
            "sbatch: error: Batch job submission failed: Invalid account or account/partition "
            "combination specified",
            "Invalid account or account/partition combination specified",
        ),
        ("sbatch: error: Invalid --array specification", "Invalid --array specification"),
        # transient: a later try may pass
        (
            "sbatch: error: Batch job submission failed: Unable to contact slurm controller "
            "(connect failure)",
            None,
        ),
        ("sbatch: error: Batch job submission failed: Socket timed out on send/recv", None),
        (
            "sbatch: error: Batch job submission failed: Job violates accounting/QOS policy "
            "(job submit limit, user's size and/or time limits)",
            None,
        ),
    ],
)
def test_sbatch_refusals_of_the_request_are_told_from_transient_failures(
    stderr: str, reason: str | None
) -> None:
    assert sbatch_refusal(stderr) == reason


def test_a_refused_submission_raises_slurm_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    from hpc_pipeline.config import SlurmResources
    from hpc_pipeline.slurm.errors import SlurmError, SlurmRejected

    answers = iter(
        [
            (1, "", "sbatch: error: Batch job submission failed: Invalid qos specification"),
            (1, "", "sbatch: error: Batch job submission failed: Slurmctld is busy"),
        ]
    )
    monkeypatch.setattr(SlurmHook, "run", lambda self, argv, timeout=None: next(answers))
    hook = SlurmHook.__new__(SlurmHook)
    args: dict[str, Any] = dict(job_name="j", resources=SlurmResources(qos="nope"), output="o")
    with pytest.raises(SlurmRejected) as refused:
        hook.submit("s.sh", **args)
    assert refused.value.reason == "Invalid qos specification"
    with pytest.raises(SlurmError) as failed:
        hook.submit("s.sh", **args)
    assert not isinstance(failed.value, SlurmRejected)


def test_connect_failures_say_what_to_check() -> None:
    refused = paramiko.ssh_exception.NoValidConnectionsError(
        {("127.0.0.1", 1): ConnectionRefusedError(111, "Connection refused")}
    )
    assert connect_failure(refused, 20).startswith("connection refused: nothing listens")
    dns = socket.gaierror(-2, "Name or service not known")
    assert connect_failure(dns, 20) == "the host name does not resolve (Name or service not known)"
    assert "no answer within 20 s" in connect_failure(TimeoutError("timed out"), 20)
    assert "refused the login" in connect_failure(paramiko.AuthenticationException("no"), 20)
    assert "SSH handshake failed" in connect_failure(paramiko.SSHException("banner"), 20)
    missing = FileNotFoundError(2, "No such file or directory", "/keys/id")
    assert connect_failure(missing, 20).startswith("the SSH key cannot be read")


def test_an_unreachable_login_node_fails_fast_naming_host_port_and_cause() -> None:
    """A real refused connection (nothing listens on the port) through the real hook."""
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    os.environ["AIRFLOW_CONN_UNIT_DEAD_LOGIN"] = json.dumps(
        {"conn_type": "ssh", "host": "127.0.0.1", "port": port, "login": "someone"}
    )
    try:
        hook = SlurmHook("unit_dead_login", conn_retry_attempts=1)
        started = time.monotonic()
        with pytest.raises(LoginUnreachable) as err:
            hook.run(["true"])
        assert time.monotonic() - started < 10
    finally:
        os.environ.pop("AIRFLOW_CONN_UNIT_DEAD_LOGIN")
    message = str(err.value)
    assert f"someone@127.0.0.1:{port}" in message and "'unit_dead_login'" in message
    assert "connection refused" in message
    assert err.value.__suppress_context__  # no chained traceback of paramiko's internals
    assert isinstance(err.value, OSError)  # the trigger's polls still ride it out


@pytest.mark.parametrize(
    "reason,blocked",
    [
        ("BadConstraints", True),
        ("DependencyNeverSatisfied", True),
        ("ReqNodeNotAvail, UnavailableNodes:c1", True),
        ("PartitionTimeLimit", True),
        ("QOSMaxWallDurationPerJobLimit", True),
        ("AssocMaxGRESPerJob", True),
        ("JobHeldUser", True),
        ("Priority", False),
        ("Resources", False),
        ("Dependency", False),
        ("BeginTime", False),
        ("JobArrayTaskLimit", False),
        ("QOSGrpGRES", False),
        ("AssocGrpCpuLimit", False),
        ("SomethingNew", False),  # a future SLURM's reason: waits, like unknown states
        ("", False),
    ],
)
def test_reasons_that_mean_slurm_will_not_start_the_job(reason: str, blocked: bool) -> None:
    assert (blocked_because(reason) is not None) is blocked


def test_the_pending_clock_runs_only_while_a_job_is_blocked() -> None:
    clock = PendingClock(60)
    assert clock.update([_pending("7", None, "BadConstraints")], now=100) == []
    assert clock.update([_pending("7", None, "BadConstraints")], now=150) == []
    assert clock.update([_pending("7", None, "BadConstraints")], now=160) == [
        Stuck("7", "BadConstraints", 60)
    ]
    # an ordinary reason, or running, stops the clock; blocked again starts it afresh
    clock.update([_pending("7", None, "Priority")], now=170)
    assert clock.update([_pending("7", None, "ReqNodeNotAvail")], now=180) == []
    assert clock.update([_pending("7", None, "ReqNodeNotAvail")], now=239) == []
    assert clock.update([replace(job_row("7", None, "RUNNING"))], now=300) == []
    assert clock.since == {}
    assert PendingClock(None).update([_pending("7", None, "BadConstraints")], now=1e9) == []
    clock = PendingClock(None)
    clock.update([_pending("7", 0, "BadConstraints"), _pending("7", 1, "Priority")], now=1)
    assert clock.newly == {"7_0": "BadConstraints"}
    clock.update([_pending("7", 0, "BadConstraints"), _pending("7", 1, "JobHeldUser")], now=2)
    assert clock.newly == {"7_1": "JobHeldUser"}
    assert blocked_notes(clock.newly, None) == [
        "job 7_1 pends with reason JobHeldUser: it is held (scontrol hold / sbatch --hold); "
        "`scontrol release` it; SLURM will not start it as submitted: no pending limit is "
        "set: it waits until someone acts"
    ]


def test_the_stuck_message_names_reason_jobs_limit_and_what_to_do() -> None:
    message = stuck_message(
        [Stuck("12_0", "BadConstraints", 3700), Stuck("12_1", "BadConstraints", 3650)],
        3600,
        ["12"],
    )
    assert message.startswith(
        "jobs 12_0, 12_1 pending for 1h01m (over max_pending_s 3600) with reason "
        "BadConstraints: the job's constraints"
    )
    assert "Cancelled job(s) ['12']" in message and "then clear the task" in message
    assert "for 0m05s" in stuck_message([Stuck("3", "JobHeldUser", 5)], 5, [])


def test_node_loss_is_named_for_failed_and_requeued_jobs() -> None:
    failed = replace(job_row("12", 4, "NODE_FAIL"), node="c1")
    requeued = replace(
        job_row("12", 5, "PENDING"), node=None, prior_state="NODE_FAIL", prior_node="c2"
    )
    assert node_loss_notes([failed, requeued, job_row("12", 6, "COMPLETED")]) == [
        "node c1 failed under job 12_4 (NODE_FAIL)",
        "node c2 failed under job 12_5 (NODE_FAIL); SLURM requeued it (now PENDING)",
    ]
    two = [replace(job_row("12", i, "NODE_FAIL"), node="c1") for i in (0, 1)]
    assert node_loss_notes(two) == ["node c1 failed under jobs 12_0, 12_1 (NODE_FAIL)"]
    assert failure_message([failed]) == (
        "12_4 NODE_FAIL exit=0:0 node=c1; node c1 failed under job 12_4 (NODE_FAIL)"
    )
    assert event_payload(["12"], "failed", "m", [failed])["failed_indices"] == [4]


def test_the_controller_row_of_a_requeued_job_keeps_the_lost_attempt() -> None:
    accounting = [replace(job_row("34", 0, "NODE_FAIL"), node="c1"), job_row("34", 1, "FAILED")]
    controller = [
        replace(job_row("34", 0, "PENDING"), node=None),
        replace(job_row("34", 1, "FAILED")),
    ]
    rows = {j.job_id: j for j in reconcile(accounting, controller)}
    assert (rows["34_0"].state, rows["34_0"].prior_state, rows["34_0"].prior_node) == (
        "PENDING",
        "NODE_FAIL",
        "c1",
    )
    assert rows["34_1"].prior_state == ""
    # not requeued: the controller says NODE_FAIL as well, no earlier attempt to tell
    same = reconcile(accounting[:1], [replace(job_row("34", 0, "NODE_FAIL"), node="c1")])
    assert same[0].prior_state == ""


Poll = tuple[list[JobState], "str | None"]  # (jobs, accounting error)


class _Hook:
    """Stands in for SlurmHook in the trigger: scripted polls (and accounting errors), the
    calls recorded."""

    def __init__(self, polls: list[Poll]) -> None:
        self.polls = polls
        self.calls: list[str] = []
        self.accounting_error: str | None = None

    def query(self, job_ids: list[str], array_size: int | None = None) -> list[JobState]:
        self.calls.append("query")
        jobs, self.accounting_error = self.polls.pop(0)
        return jobs

    def progress_probe(self, *args: Any) -> Any:
        raise AssertionError("every pending job came with its reason")

    def cancel(self, job_ids: list[str]) -> None:
        self.calls.append(f"cancel {job_ids}")

    def attempts(self, job_ids: list[str]) -> list[JobState]:
        self.calls.append(f"attempts {job_ids}")
        return [  # sacct -D: the attempt lost with its node, then the requeued one
            replace(job_row("9", 0, "NODE_FAIL"), node="c1"),
            _pending("9", 0, "BeginTime"),
        ]

    def close(self) -> None:
        pass


def _run(fake: _Hook, caplog: pytest.LogCaptureFixture, **kw: Any) -> dict[str, Any]:
    trig = SlurmJobTrigger(
        ssh_conn_id="x", job_ids=["9"], poll_interval=0.01, max_poll_interval=0.01, **kw
    )
    trig._hook = lambda: cast(SlurmHook, fake)  # type: ignore[method-assign]
    trig._log = logging.getLogger("test.faults")  # type: ignore[assignment]

    async def first() -> dict[str, Any]:
        async for event in trig.run():
            return event.payload
        raise AssertionError("no event")

    with caplog.at_level(logging.INFO):
        return asyncio.run(first())


def test_a_job_pending_for_a_blocking_reason_is_cancelled_after_the_limit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    polls = [([_pending("9", None, "BadConstraints")], None)] * 200
    event = _run(_Hook(list(polls)), caplog, max_pending=0.05)
    assert event["status"] == "stuck"
    assert "with reason BadConstraints" in event["message"]
    assert "Cancelled job(s) ['9']" in event["message"]
    said = [r.getMessage() for r in caplog.records]
    assert any("pending 1 (1 BadConstraints)" in m for m in said)  # the progress line
    assert [m for m in said if "pends with reason" in m] == [  # said once, at once
        "job 9 pends with reason BadConstraints: the job's constraints (features, gres, node "
        "counts) cannot be satisfied; SLURM will not start it as submitted: cancelled after "
        "max_pending_s 0 unless it starts"
    ]
    assert (
        SlurmJobTrigger(ssh_conn_id="x", job_ids=["9"], max_pending=5).serialize()[1]["max_pending"]
        == 5
    )
    # ordinary queueing is never limited: the job runs in the end
    queued: list[Poll] = [([_pending("9", None, "Priority")], None)] * 30
    fake = _Hook(queued + [([job_row("9", None, "COMPLETED")], None)])
    assert _run(fake, caplog, max_pending=0.01)["status"] == "success"
    assert not [c for c in fake.calls if c.startswith("cancel")]


def test_accounting_down_is_said_once_and_its_return_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    down = (
        "sacct: error: slurm_persist_conn_open_without_init: failed to open persistent connection"
    )
    running = [replace(job_row("9", None, "RUNNING"), source="squeue")]
    fake = _Hook(
        [
            ([job_row("9", None, "RUNNING")], None),
            (running, down),
            (running, down),
            ([replace(job_row("9", None, "COMPLETED"), source="squeue")], down),
        ]
    )
    assert _run(fake, caplog)["status"] == "success"
    said = [r.getMessage() for r in caplog.records if "Accounting" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith(f"Accounting (sacct) cannot answer: {down}.")
    assert "from the controller's view (squeue)" in said[0]
    fake = _Hook(
        [([job_row("9", None, "RUNNING")], down), ([job_row("9", None, "COMPLETED")], None)]
    )
    caplog.clear()
    _run(fake, caplog)
    said = [r.getMessage() for r in caplog.records if "Accounting" in r.getMessage()]
    assert len(said) == 2 and said[1].startswith("Accounting (sacct) answers again after")


def test_the_trigger_names_a_node_lost_under_a_requeued_job_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    requeued = replace(
        _pending("9", 0, "BeginTime"), prior_state="NODE_FAIL", prior_node="c1", job_id="9_0"
    )
    fake = _Hook([([requeued], None), ([requeued], None), ([job_row("9", 0, "COMPLETED")], None)])
    assert _run(fake, caplog)["status"] == "success"
    lost = [r.getMessage() for r in caplog.records if "failed under" in r.getMessage()]
    assert lost == ["node c1 failed under job 9_0 (NODE_FAIL); SLURM requeued it (now PENDING)"]


def test_a_job_requeued_at_once_in_accounting_is_traced_to_the_node_it_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """SLURM 24.11's accounting lists the requeued attempt (PENDING) at once: the trigger sees
    an index that ran on c1 wait again, and asks for its attempts (one sacct -D) then only."""
    running = replace(job_row("9", 0, "RUNNING"), node="c1")
    fake = _Hook(
        [
            ([running], None),
            ([running], None),
            ([_pending("9", 0, "BeginTime")], None),
            ([_pending("9", 0, "BeginTime")], None),
            ([replace(job_row("9", 0, "RUNNING"), node="c2")], None),
            ([job_row("9", 0, "COMPLETED")], None),
        ]
    )
    assert _run(fake, caplog, array_size=1)["status"] == "success"
    assert [c for c in fake.calls if c.startswith("attempts")] == ["attempts ['9_0']"]
    lost = [r.getMessage() for r in caplog.records if "failed under" in r.getMessage()]
    assert lost == ["node c1 failed under job 9_0 (NODE_FAIL); SLURM requeued it (now PENDING)"]
    # requeued by hand (an earlier attempt not lost to a node): nothing to name
    assert (
        with_lost_attempts([_pending("9", 0, "")], [job_row("9", 0, "CANCELLED")])[0].prior_state
        == ""
    )
    assert requeued({"9_0": "c1"}, [job_row("9", 0, "COMPLETED")]) == []


def test_per_node_counts_of_a_day() -> None:
    jobs: list[dict[str, Any]] = [
        {"step": "master", "node": "c1", "array_index": -1, "state": "COMPLETED"},
        {"step": "audio", "node": "c1", "array_index": 0, "state": "NODE_FAIL"},
        {"step": "audio", "node": "c2", "array_index": 0, "state": "COMPLETED"},
        {"step": "audio", "node": "c2", "array_index": 1, "state": "COMPLETED"},
        {"step": "audio", "node": None, "array_index": 2, "state": "CANCELLED"},
    ]
    clips: list[dict[str, Any]] = [
        {"node": "c2", "clips": 7, "failed": 1},
        {"node": "c1", "clips": 2, "failed": 0},
        {"node": None, "clips": 1, "failed": 1},
    ]
    assert [n.model_dump() for n in node_counts(jobs, clips)] == [
        {
            "node": "c1",
            "array_indices": 1,
            "array_indices_failed": 1,
            "clips": 2,
            "clips_failed": 0,
        },
        {
            "node": "c2",
            "array_indices": 2,
            "array_indices_failed": 0,
            "clips": 7,
            "clips_failed": 1,
        },
    ]
    assert node_counts([], []) == []


def test_max_pending_s_is_a_site_config_key(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from hpc_pipeline.config import load_config

    monkeypatch.delenv("AUDIO_PIPELINE_CONFIG", raising=False)
    assert load_config(None).max_pending_s == 3600
    path = tmp_path / "site.json"
    path.write_text(json.dumps({"max_pending_s": None}))
    assert load_config(str(path)).max_pending_s is None
    path.write_text(json.dumps({"max_pending_s": 120}))
    assert load_config(str(path)).max_pending_s == 120
