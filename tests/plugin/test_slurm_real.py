"""The SLURM plugin against real SLURM: sshd, slurmctld/slurmd, slurmdbd; tasks run by Airflow
(``dag.test()``, which runs the deferred trigger inline). Every test runs in each world of
tests/slurm_worlds.py: the native 22.05 bed and the 24.11 cluster (AUDIO_TEST_CLUSTER=1)."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from airflow.dag_processing.bundles.manager import DagBundlesManager
from airflow.dag_processing.collection import update_dag_parsing_results_in_db
from airflow.sdk import DAG
from airflow.serialization.serialized_objects import LazyDeserializedDAG
from airflow.utils.session import create_session

from audio_hpc.contract import FAILED_LINE_MARK
from hpc_pipeline.config import SlurmResources
from hpc_pipeline.hooks.slurm import SlurmHook
from hpc_pipeline.operators.slurm import SlurmSubmitOperator
from hpc_pipeline.sensors.slurm import SlurmJobSensor
from hpc_pipeline.slurm.errors import SlurmUnavailable
from hpc_pipeline.triggers.slurm import SlurmJobTrigger
from slurm_worlds import (  # noqa: F401  (fixtures)
    Cluster,
    SlurmWorld,
    slurm_world,
    world_devcluster,
    world_ssh_conn_id,
)
from support import run_as_submit_user

TOKEN = uuid.uuid4().hex[:8]
FAST: dict[str, Any] = dict(poll_interval=1, max_poll_interval=2)
DBD_DOWN_S = 60  # how long slurmdbd stays down in its test
# Short limits let the backfill scheduler slot test jobs in front of big pending ones.
RES = SlurmResources(time="1", mem="100M")
SCRIPTS = {
    # Echo args and env so tests can see exactly what reached the job.
    "ok.sh": 'echo "args:"; printf "<%s>\\n" "$@"; echo "FOO=<$FOO>"; '
    'echo "gpus=<${CUDA_VISIBLE_DEVICES:-}>"; sleep "${SLEEP:-1}"',
    "fail.sh": 'echo "about to fail"; echo "last words" >&2; exit 3',
    # Index 1 fails the first time only (a marker file remembers), like a flaky shard.
    "flaky_array.sh": 'echo "index $SLURM_ARRAY_TASK_ID"; sleep 1; '
    'if [ "$SLURM_ARRAY_TASK_ID" = 1 ] && [ ! -e "$MARK" ]; then '
    'touch "$MARK"; echo "shard 1 broke"; exit 4; fi',
    "sleep.sh": 'echo "sleeping $1"; sleep "$1"',
    # A part of a split array: the shard is the part's index plus its offset; shard 3 fails once.
    "split_array.sh": 'shard=$((SLURM_ARRAY_TASK_ID + ARRAY_INDEX_OFFSET)); echo "shard $shard"; '
    'if [ "$shard" = 3 ] && [ ! -e "$MARK" ]; then touch "$MARK"; exit 5; fi',
    # A part of a chained array (MaxJobCount): long enough that parts running at once overlap.
    "chain_part.sh": 'echo "shard $((SLURM_ARRAY_TASK_ID + ARRAY_INDEX_OFFSET))"; sleep 2',
}

# What tasks raised, filled by callbacks (dag.test runs tasks in this process), and the
# last task instance run (for XCom checks).
OUTCOMES: dict[str, Any] = {}
LAST_TI: list[Any] = []


def _on_failure(context: Any) -> None:
    OUTCOMES[context["ti"].task_id] = context.get("exception")


@pytest.fixture(scope="module")
def remote(ssh_conn_id: str, airflow_db: None) -> Iterator[tuple[SlurmHook, str]]:
    """A hook and a fresh remote dir holding the test scripts."""
    hook = SlurmHook(ssh_conn_id)
    base = hook.resolve(f"plugin-tests/{TOKEN}")
    hook.makedirs(base)
    for name, body in SCRIPTS.items():
        hook.write_text(f"{base}/{name}", f"#!/bin/bash\nset -u\n{body}\n", 0o755)
    yield hook, base
    hook.close()


@pytest.fixture(scope="module")
def timeout_job(remote: tuple[SlurmHook, str]) -> str:
    """A --time=1 job submitted when the module starts: SLURM kills it after ~75 s, which
    the last test (a sensor) then observes, so the wait overlaps the other tests."""
    hook, base = remote
    return hook.submit(
        f"{base}/sleep.sh",
        job_name=f"t{TOKEN}-timeout",
        script_args=["600"],
        resources=SlurmResources(time="1", mem="100M"),
        output=f"{base}/timeout-%j.out",
    )


def run_task(
    op_factory: Callable[[], Any], *, dag_id: str, logical_date: datetime | None = None
) -> tuple[str, Any]:
    """Run one task through ``dag.test()``; return (final state, return value or exception)."""
    with DAG(
        dag_id=f"{dag_id}_{TOKEN}",
        schedule=None,
        catchup=False,
        start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
    ) as dag:
        op = op_factory()
    op.on_failure_callback = [_on_failure]
    OUTCOMES.pop(op.task_id, None)
    with create_session() as session:  # a fresh metadata DB has no bundles until a dag.test()
        DagBundlesManager().sync_bundles_to_db(session=session)
    with create_session() as session:  # dag.test() needs the DAG serialized, as if parsed
        update_dag_parsing_results_in_db(
            "dags-folder", None, [LazyDeserializedDAG.from_dag(dag)], {}, None, set(), session
        )
    dr = dag.test(logical_date=logical_date or datetime.now(timezone.utc))
    ti = dr.get_task_instance(op.task_id)
    LAST_TI[:] = [ti]
    if ti.state == "success":
        return ti.state, ti.xcom_pull(task_ids=op.task_id)
    return ti.state, OUTCOMES.get(op.task_id)


def submit_op(base: str, name: str, script: str = "ok.sh", **kw: Any) -> Callable[[], Any]:
    kw.setdefault("resources", RES)
    return lambda: SlurmSubmitOperator(
        task_id="step",
        ssh_conn_id="hpc_ssh",
        script=f"{base}/{script}",
        job_name=f"t{TOKEN}-{name}",
        log_dir=f"plugin-tests/{TOKEN}/logs",
        **{**FAST, **kw},
    )


def sacct_rows(
    world: SlurmWorld, *selector: str, fields: str = "JobID,State,JobName"
) -> list[list[str]]:
    proc = world.slurm(["sacct", "-X", "-P", "-n", f"--format={fields}", *selector])
    assert proc.returncode == 0, proc.stderr
    return [line.split("|") for line in proc.stdout.splitlines()]


def wait_running(world: SlurmWorld, job_id: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "RUNNING" in world.slurm(["squeue", "-h", "-j", job_id, "-o", "%T"]).stdout:
            return
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} never ran")


def watched_job_id(world: SlurmWorld) -> str:
    """The job the (only) deferred task of this process is watching: the newest job of ours."""
    proc = world.slurm(["squeue", "-h", "-u", "hpcuser", "-o", "%i %j"])
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    ids = [line.split()[0] for line in out.splitlines() if TOKEN in line and "timeout" not in line]
    return max(ids, key=lambda i: int(i.split("_")[0])) if ids else ""


class Worker(threading.Thread):
    """``action`` in a daemon thread; what it raised stays in ``errors`` for the test."""

    def __init__(self, action: Callable[[], object]) -> None:
        super().__init__(daemon=True)
        self.action = action
        self.errors: list[BaseException] = []

    def run(self) -> None:
        try:
            self.action()
        except BaseException as exc:  # reported by the test after join
            self.errors.append(exc)


def in_background(action: Callable[[], object]) -> Worker:
    worker = Worker(action)
    worker.start()
    return worker


def until(predicate: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.3)
    raise AssertionError("condition never met")


# --------------------------------------------------------------------------------------


def test_success_on_gpu_partition(
    remote: tuple[SlurmHook, str], timeout_job: str, capsys: pytest.CaptureFixture[str]
) -> None:
    hook, base = remote
    state, result = run_task(
        submit_op(
            base,
            "ok",
            resources=SlurmResources(partition="gpu", gres="gpu:1", time="1", mem="100M"),
            script_args=["a b", "c"],
            env={"FOO": "x,y z"},
        ),
        dag_id="ok",
    )
    assert state == "success", result
    task_log = capsys.readouterr().out
    (job_id,) = result["job_ids"]
    assert f"Watching SLURM job(s) ['{job_id}']; remote log: {result['log_path']}" in task_log
    assert "FOO=<x,y z>" in task_log  # the job's log tail, in the task log
    pushed = LAST_TI[0].xcom_pull(task_ids="step", key="slurm_job")
    assert pushed == {"job_ids": [job_id], "log_path": result["log_path"]}
    assert result["counts"] == {"COMPLETED": 1}
    (task,) = hook.query([job_id])  # the details stay in SLURM, not in the XCom
    assert task.state == "COMPLETED" and task.exit_code == "0:0" and task.node
    assert task.gpus == 1 and task.elapsed_s is not None
    log = hook.read_text(result["log_path"].replace("%j", result["job_ids"][0]))
    assert "<a b>\n<c>" in log and "FOO=<x,y z>" in log and "gpus=<0>" in log


def test_sftp_helpers(remote: tuple[SlurmHook, str], tmp_path: Any) -> None:
    hook, base = remote
    (tmp_path / "sub dir").mkdir()
    (tmp_path / "sub dir" / "run.sh").write_text("#!/bin/sh\necho tree\n")
    (tmp_path / "sub dir" / "run.sh").chmod(0o750)
    hook.put_tree(str(tmp_path), f"plugin-tests/{TOKEN}/tree")
    target = f"{base}/tree/sub dir/run.sh"
    assert hook.exists(target) and not hook.exists(f"{base}/tree/nope")
    assert hook.read_text(f"~/plugin-tests/{TOKEN}/tree/sub dir/run.sh").endswith("echo tree\n")
    assert hook.run([target]) == (0, "tree\n", "")


def test_nonzero_exit_names_state_exit_node_and_log_tail(remote: tuple[SlurmHook, str]) -> None:
    _, base = remote
    state, exc = run_task(submit_op(base, "fail", script="fail.sh"), dag_id="fail")
    assert state == "failed"
    message = str(exc)
    assert "FAILED" in message and "exit=3:0" in message and "node=-" not in message
    assert "node=" in message and "about to fail" in message and "last words" in message


def test_cancelled_from_outside(
    remote: tuple[SlurmHook, str], devcluster: dict[str, str], slurm_world: SlurmWorld
) -> None:
    _, base = remote

    def cancel() -> None:
        job_id = until(lambda: watched_job_id(slurm_world))
        wait_running(slurm_world, job_id)
        assert run_as_submit_user(devcluster, f"scancel {job_id}").returncode == 0

    canceller = in_background(cancel)
    state, exc = run_task(
        submit_op(base, "cancel", script="sleep.sh", script_args=["120"]), dag_id="cancel"
    )
    canceller.join()
    assert not canceller.errors, canceller.errors
    assert state == "failed" and "CANCELLED" in str(exc)


def test_array_retry_resubmits_only_the_failed_index(
    remote: tuple[SlurmHook, str], slurm_world: SlurmWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Also: one sacct call per poll for the whole array, never one per index."""
    _, base = remote
    commands: list[str] = []
    calls: list[tuple[int, int]] = []  # (sacct, squeue) calls made by each poll
    run, query = SlurmHook.run, SlurmHook.query

    def recording_run(self: SlurmHook, argv: list[str], timeout: float | None = None) -> Any:
        commands.append(argv[0])
        return run(self, argv, timeout)

    def counting_query(self: SlurmHook, job_ids: list[str], array_size: int | None = None) -> Any:
        start = len(commands)
        try:
            return query(self, job_ids, array_size)
        finally:
            calls.append((commands[start:].count("sacct"), commands[start:].count("squeue")))

    monkeypatch.setattr(SlurmHook, "run", recording_run)
    monkeypatch.setattr(SlurmHook, "query", counting_query)
    OUTCOMES.pop("step_retry", None)

    def retry_seen(context: Any) -> None:
        OUTCOMES["step_retry"] = context.get("exception")

    state, result = run_task(
        submit_op(
            base,
            "array",
            script="flaky_array.sh",
            array_size="3",
            resources=SlurmResources(time="1", mem="100M", array_parallelism=2),
            env={"MARK": f"{base}/array-mark"},
            retries=1,
            retry_delay=timedelta(0),
            on_retry_callback=[retry_seen],
        ),
        dag_id="array",
    )
    assert state == "success", result
    first_try = str(OUTCOMES["step_retry"])
    assert "failed array indices: [1]" in first_try and "shard 1 broke" in first_try
    first, second = result["job_ids"]
    # (accounting lists a fresh array job as "<id>" for a moment before "<id>_<index>")
    until(
        lambda: (
            sorted(r[0] for r in sacct_rows(slurm_world, "-j", first))
            == [f"{first}_{i}" for i in range(3)]
        )
    )
    until(lambda: [r[0] for r in sacct_rows(slurm_world, "-j", second)] == [f"{second}_1"])
    assert result["counts"] == {"COMPLETED": 3}  # index 1 judged by the retry's row
    assert len(calls) >= 4 and all(s == 1 and q <= 1 for s, q in calls), calls


def test_reattach_instead_of_submitting_twice(
    remote: tuple[SlurmHook, str], slurm_world: SlurmWorld
) -> None:
    """A job submitted by an earlier try (worker died after sbatch) is reattached while live,
    and again once COMPLETED when the task runs another time: never a second job."""
    hook, base = remote
    name = f"t{TOKEN}-reattach"
    earlier = hook.submit(
        f"{base}/sleep.sh",
        job_name=name,
        script_args=["3"],
        resources=RES,
        output=hook.resolve(f"plugin-tests/{TOKEN}/logs/{name}-%j.out"),
    )
    when = datetime(2024, 3, 1, tzinfo=timezone.utc)
    for _ in range(2):
        state, result = run_task(
            submit_op(base, "reattach", script="sleep.sh", script_args=["3"]),
            dag_id="reattach",
            logical_date=when,
        )
        assert state == "success", result
        assert result["job_ids"] == [earlier]
    assert [r[0] for r in sacct_rows(slurm_world, "--name", name, "-S", "now-1hour")] == [earlier]


@pytest.mark.alone
def test_sshd_restart_while_watching(
    remote: tuple[SlurmHook, str], slurm_world: SlurmWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, base = remote
    errors: list[BaseException] = []
    query = SlurmHook.query

    def recording_query(self: SlurmHook, job_ids: list[str], array_size: int | None = None) -> Any:
        try:
            return query(self, job_ids, array_size)
        except BaseException as exc:
            errors.append(exc)
            raise

    monkeypatch.setattr(SlurmHook, "query", recording_query)

    def outage() -> None:
        wait_running(slurm_world, until(lambda: watched_job_id(slurm_world)))
        try:
            slurm_world.stop_sshd()
            time.sleep(6)
        finally:
            slurm_world.start_sshd()

    restarter = in_background(outage)
    try:
        state, result = run_task(
            submit_op(base, "sshd", script="sleep.sh", script_args=["15"]), dag_id="sshd"
        )
    finally:
        restarter.join()
        slurm_world.start_sshd()
    assert not restarter.errors, restarter.errors
    assert state == "success", result
    assert errors, "the watch never saw the outage"


@pytest.mark.alone
def test_command_cut_off_by_sshd_is_an_outage(
    remote: tuple[SlurmHook, str], slurm_world: SlurmWorld
) -> None:
    """A command whose SSH session dies under it (sshd restarted mid-command: paramiko reports
    no exit status) raises SlurmUnavailable, which the trigger rides out, never a failure."""
    hook, _ = remote
    cut = SlurmHook(hook.ssh_conn_id)
    cut.run(["true"])  # connected before the outage starts

    def cut_off() -> None:
        time.sleep(2)
        slurm_world.stop_sshd()

    killer = in_background(cut_off)
    try:
        started = time.monotonic()
        with pytest.raises(SlurmUnavailable, match="session ended before the command finished"):
            cut.run(["sleep", "30"])
        assert time.monotonic() - started < 20  # cut off, not run to its end
    finally:
        killer.join()
        slurm_world.start_sshd()
        cut.close()
    assert not killer.errors, killer.errors
    assert cut.run(["echo", "back"])[:2] == (0, "back\n")  # a new session works again


@pytest.mark.alone
def test_slurmdbd_down_for_a_minute_while_watching(
    remote: tuple[SlurmHook, str],
    slurm_world: SlurmWorld,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """slurmdbd stopped for a minute while the watched job runs: the watch answers from
    squeue, says so once, says when accounting is back, and the job's outcome (COMPLETED,
    one job, never resubmitted) is what accounting records once slurmdbd is back. (Other
    sessions sharing the test bed may restart slurmdbd early, so assert on the polls made
    during the outage.)"""
    _, base = remote
    killed_at: list[float] = []
    polls: list[tuple[float, set[str]]] = []  # (time, sources of the answer)
    query = SlurmHook.query

    def recording_query(self: SlurmHook, job_ids: list[str], array_size: int | None = None) -> Any:
        jobs = query(self, job_ids, array_size)
        polls.append((time.monotonic(), {j.source for j in jobs}))
        return jobs

    monkeypatch.setattr(SlurmHook, "query", recording_query)

    def outage() -> None:
        job_id = until(lambda: watched_job_id(slurm_world))
        wait_running(slurm_world, job_id)
        # accounting knew the job before it went away
        until(lambda: sacct_rows(slurm_world, "-j", job_id))
        try:
            slurm_world.stop_slurmdbd()
            killed_at.append(time.monotonic())
            time.sleep(DBD_DOWN_S)
        finally:
            slurm_world.start_slurmdbd()

    breaker = in_background(outage)
    try:
        state, result = run_task(
            submit_op(
                base,
                "dbd",
                script="sleep.sh",
                script_args=[str(DBD_DOWN_S + 8)],  # ends once accounting is back
                resources=SlurmResources(time="3", mem="100M"),
                max_poll_interval=1,
            ),
            dag_id="dbd",
        )
    finally:
        breaker.join()
        slurm_world.start_slurmdbd()
    assert not breaker.errors, breaker.errors
    log = capsys.readouterr()
    log_text = log.out + log.err
    assert state == "success", result
    assert result["counts"] == {"COMPLETED": 1} and len(result["job_ids"]) == 1
    during = [s for at, s in polls if killed_at[0] < at < killed_at[0] + DBD_DOWN_S - 5]
    assert during and all(s == {"squeue"} for s in during), polls
    print(*(ln for ln in log_text.splitlines() if "Accounting (sacct)" in ln), sep="\n")
    assert log_text.count("Accounting (sacct) cannot answer") == 1, log_text[-3000:]
    assert "Judging the jobs from the controller's view (squeue)" in log_text
    assert "Accounting (sacct) answers again after" in log_text
    # recorded right: accounting caught up with the one job, COMPLETED
    rows = until(
        lambda: (
            (r := sacct_rows(slurm_world, "--name", f"t{TOKEN}-dbd", fields="JobID,State,ExitCode"))
            and r[0][1] == "COMPLETED"
            and r
        ),
        timeout=30,
    )
    assert rows == [[result["job_ids"][0], "COMPLETED", "0:0"]]


def test_unreachable_login_node_fails_fast_naming_host_and_port(
    remote: tuple[SlurmHook, str], slurm_world: SlurmWorld
) -> None:
    """A wrong port in the SSH connection: the task fails within seconds (the SSH
    provider's 3 connection attempts), naming user@host:port, the connection and the cause."""
    if slurm_world.name != "bed":
        pytest.skip("no SLURM is reached: once, on the bed, is enough")
    _, base = remote
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    os.environ["AIRFLOW_CONN_DEAD_LOGIN"] = json.dumps(
        {"conn_type": "ssh", "host": "127.0.0.1", "port": port, "login": "hpcuser"}
    )
    started = time.monotonic()
    try:
        state, exc = run_task(
            lambda: SlurmSubmitOperator(
                task_id="step",
                ssh_conn_id="dead_login",
                script=f"{base}/ok.sh",
                job_name=f"t{TOKEN}-dead",
                log_dir=f"plugin-tests/{TOKEN}/logs",
                resources=RES,
                **FAST,
            ),
            dag_id="dead",
        )
    finally:
        os.environ.pop("AIRFLOW_CONN_DEAD_LOGIN")
    assert state == "failed"
    assert time.monotonic() - started < 60
    message = str(exc)
    assert f"cannot reach the login node hpcuser@127.0.0.1:{port}" in message, message
    assert "'dead_login'" in message and "connection refused" in message


def test_requests_slurm_refuses_fail_at_once_without_retries(
    remote: tuple[SlurmHook, str], slurm_world: SlurmWorld
) -> None:
    """A partition the cluster lacks and more GPUs than any node has: sbatch refuses them;
    the task fails at its first try with SLURM's message (retries would submit the same)."""
    _, base = remote
    for name, resources, slurm_says in (
        ("nopart", SlurmResources(partition="nope", time="1", mem="100M"), "Invalid partition"),
        (
            "gpu9",
            SlurmResources(partition="gpu", gres="gpu:9", time="1", mem="100M"),
            "Requested node configuration is not available",
        ),
    ):
        retried: list[Any] = []
        state, exc = run_task(
            submit_op(
                base,
                name,
                resources=resources,
                retries=2,
                retry_delay=timedelta(0),
                on_retry_callback=[retried.append],
            ),
            dag_id=name,
        )
        message = str(exc)
        assert state == "failed" and not retried, (name, message)
        assert f"SLURM refused the job: {slurm_says}" in message, message
        assert "the task is not retried" in message
        # nothing ran or waits: 22.05 records nothing; 24.11 keeps the refused gres request
        # as a job that ended FAILED (reason BadConstraints) without ever starting
        rows = sacct_rows(
            slurm_world, "--name", f"t{TOKEN}-{name}", "-S", "now-1hour", fields="JobID,State,Start"
        )
        assert all(r[1] == "FAILED" and r[2] in ("None", "Unknown") for r in rows), rows


def test_a_job_slurm_will_never_start_is_cancelled_after_max_pending(
    remote: tuple[SlurmHook, str], slurm_world: SlurmWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    """A request SLURM accepts but will never start (here: ``afterok`` on a job cancelled
    before it ran, which can never hold): the job pends with SLURM's reason, the task log
    shows it, and after ``max_pending_s`` the job is cancelled and the task fails without
    retries. (The parent is held, then cancelled: nothing waits for the bed's cores.)"""
    hook, base = remote
    parent = hook.submit(
        f"{base}/ok.sh",
        job_name=f"t{TOKEN}-parent",
        resources=SlurmResources(time="1", mem="100M", extra_args=("--hold",)),
        output=f"{base}/parent-%j.out",
    )
    hook.cancel([parent])
    retried: list[Any] = []
    state, exc = run_task(
        submit_op(
            base,
            "never",
            dependency=f"afterok:{parent}",
            max_pending_s=3,
            retries=1,
            retry_delay=timedelta(0),
            on_retry_callback=[retried.append],
        ),
        dag_id="never",
    )
    log = capsys.readouterr()
    message = str(exc)
    assert state == "failed" and not retried, message
    (job,) = LAST_TI[0].xcom_pull(task_ids="step", key="slurm_job")["job_ids"]
    assert message.startswith(f"SLURM job never started: job {job} pending for"), message
    assert "(over max_pending_s 3) with reason DependencyNeverSatisfied" in message
    assert f"Cancelled job(s) ['{job}']" in message
    print(message)
    task_log = log.out + log.err
    assert "pending 1 (1 DependencyNeverSatisfied)" in task_log  # the progress line
    assert f"job {job} pends with reason DependencyNeverSatisfied: " in task_log
    until(lambda: sacct_rows(slurm_world, "-j", job)[0][1].startswith("CANCELLED"), timeout=30)


@pytest.mark.alone
def test_controller_restarted_mid_array(
    remote: tuple[SlurmHook, str], slurm_world: SlurmWorld
) -> None:
    """slurmctld restarted while an array runs: the jobs survive in its state save, the
    trigger rides out the refused commands and reattaches; nothing is submitted again."""
    if slurm_world.name != "cluster":
        pytest.skip(
            "restarts the controller: only on the private 24.11 cluster, not the shared bed"
        )
    _, base = remote

    def restart() -> None:
        wait_running(slurm_world, until(lambda: watched_job_id(slurm_world)).split("_")[0])
        assert isinstance(slurm_world, Cluster)
        slurm_world.restart_controller()

    restarter = in_background(restart)
    state, result = run_task(
        submit_op(
            base,
            "ctld",
            script="sleep.sh",
            script_args=["10"],
            array_size="4",
            resources=SlurmResources(time="2", mem="100M", array_parallelism=2),
        ),
        dag_id="ctld",
    )
    restarter.join()
    assert not restarter.errors, restarter.errors
    assert state == "success", result
    assert len(result["job_ids"]) == 1 and result["counts"] == {"COMPLETED": 4}
    (job,) = result["job_ids"]
    assert sorted(r[0] for r in sacct_rows(slurm_world, "--name", f"t{TOKEN}-ctld")) == [
        f"{job}_{i}" for i in range(4)
    ]


def test_injection_attempts_stay_inert(
    remote: tuple[SlurmHook, str], slurm_world: SlurmWorld
) -> None:
    hook, base = remote
    pwn = f"/tmp/pwned-{TOKEN}-"
    weird = f"{base}/we ird; $(touch {pwn}1) 'q\" `touch {pwn}2`"
    hook.makedirs(weird)
    hook.write_text(f"{weird}/job.sh", f"#!/bin/bash\n{SCRIPTS['ok.sh']}\n", 0o755)
    args = [f"; touch {pwn}3", f"$(touch {pwn}4)", 'it\'s "quoted"', "a  b", "&& id >&2"]
    name = f"t{TOKEN}-inj ; touch {pwn}5 $(touch {pwn}6) 'q\" `id`"
    state, result = run_task(
        lambda: SlurmSubmitOperator(
            task_id="step",
            ssh_conn_id="hpc_ssh",
            script=f"{weird}/job.sh",
            script_args=args,
            job_name=name,
            resources=RES,
            env={"FOO": f"$(touch {pwn}7); x"},
            chdir=weird,
            log_dir=f"{weird}/log dir; $(touch {pwn}8)",
            **FAST,
        ),
        dag_id="inj",
    )
    assert state == "success", result
    log = hook.read_text(result["log_path"].replace("%j", result["job_ids"][0]))
    assert "".join(f"<{a}>\n" for a in args) in log
    assert f"FOO=<$(touch {pwn}7); x>" in log
    # Accounting may lag: under load sacct first listed this job with the placeholder name
    # "allocation" (a CI-style run, 2026-12-02), then with its own.
    rows = until(
        lambda: [
            r for r in sacct_rows(slurm_world, "-j", result["job_ids"][0]) if r[2] != "allocation"
        ]
    )
    assert [r[2] for r in rows] == [name.replace('"', "`")]  # slurmdbd's quote quirk
    assert [j.job_id for j in hook.find_jobs(name)] == result["job_ids"]
    assert not [p for p in os.listdir("/tmp") if p.startswith(f"pwned-{TOKEN}")]
    assert not hook.run(["bash", "-c", f"ls {pwn}* 2>/dev/null"])[1]


def test_progress_probe_reads_pending_reasons_and_result_lines_in_one_call(
    remote: tuple[SlurmHook, str], slurm_world: SlurmWorld
) -> None:
    """The trigger's one progress call: SLURM's reason for pending array indices (accounting
    reports none for them) and the shards' result lines, from an oddly named directory."""
    hook, base = remote
    job = hook.submit(
        f"{base}/sleep.sh",
        job_name=f"t{TOKEN}-probe",
        script_args=["40"],
        resources=SlurmResources(time="1", mem="100M", array_parallelism=1),
        output=f"{base}/probe-%A_%a.out",
        array="0-2",
    )
    results = f"{base}/res ults; $(touch /tmp/pwned-{TOKEN}-p)"
    hook.makedirs(results)
    ok, failed = ('{"status": "ok"}\n', '{"x": 1, "status": "failed"}\n')
    hook.write_text(f"{results}/shard-0000.jsonl", ok + failed + ok)
    hook.write_text(f"{results}/shard-0001.jsonl", failed)
    hook.write_text(f"{results}/notes.txt", ok)
    calls: list[list[str]] = []
    real_run = hook.run

    def recording_run(argv: Sequence[str], timeout: float | None = None) -> tuple[int, str, str]:
        calls.append(list(argv))
        return real_run(argv, timeout)

    setattr(hook, "run", recording_run)  # noqa: B010  (an instance attribute, not the class's)
    try:
        wait_running(slurm_world, f"{job}_0", timeout=300)  # then %1 holds the other two back
        probe = hook.progress_probe([job], results, None, FAILED_LINE_MARK)
        assert len(calls) == 1
        assert probe.reasons == {f"{job}_1": "JobArrayTaskLimit", f"{job}_2": "JobArrayTaskLimit"}
        assert probe.counts == {"shard-0000.jsonl": (3, 1), "shard-0001.jsonl": (1, 1)}
        assert (probe.squeue_rc, probe.count_rc) == (0, 0)
        only = hook.progress_probe(
            [], results, ["shard-0001.jsonl", "shard-0009.jsonl"], FAILED_LINE_MARK
        )
        assert (only.reasons, only.counts) == ({}, {"shard-0001.jsonl": (1, 1)})
        # a job the controller no longer knows, a results dir not created yet: no error
        gone = hook.progress_probe(["999999999"], f"{results}/nope", None, FAILED_LINE_MARK)
        assert (gone.reasons, gone.counts, gone.count_rc) == ({}, {}, 0) and gone.squeue_rc != 0
        assert hook.progress_probe([], results, [], FAILED_LINE_MARK).counts is None
        assert len(calls) == 3  # nothing to ask: no remote call at all
    finally:
        del hook.run  # the class method again
        hook.cancel([job])
    assert not [p for p in os.listdir("/tmp") if p.startswith(f"pwned-{TOKEN}")]


def test_on_kill_cancels_the_job(remote: tuple[SlurmHook, str], slurm_world: SlurmWorld) -> None:
    """The trigger's on_kill is what Airflow 3.3's triggerer calls when a deferred task is
    marked failed/success or cleared in the UI; the operator's covers a kill before deferral."""
    hook, base = remote
    job_ids = [
        hook.submit(
            f"{base}/sleep.sh",
            job_name=f"t{TOKEN}-kill{i}",
            script_args=["120"],
            resources=RES,
            output=f"{base}/kill-%j.out",
        )
        for i in range(2)
    ]
    asyncio.run(SlurmJobTrigger(ssh_conn_id="hpc_ssh", job_ids=job_ids[:1]).on_kill())
    op = submit_op(base, "kill1")()
    op._job_ids = job_ids[1:]
    op.on_kill()

    def cancelled(job_id: str) -> bool:
        rows = sacct_rows(slurm_world, "-j", job_id)
        return bool(rows) and rows[0][1].startswith("CANCELLED")

    for job_id in job_ids:
        until(functools.partial(cancelled, job_id), timeout=30)


def test_zero_array_size_skips(remote: tuple[SlurmHook, str], slurm_world: SlurmWorld) -> None:
    _, base = remote
    state, _ = run_task(submit_op(base, "skip", array_size="0"), dag_id="skip")
    assert state == "skipped"
    assert not sacct_rows(slurm_world, "--name", f"t{TOKEN}-skip", "-S", "now-1hour")


def test_split_array_retries_only_the_failed_shard(
    remote: tuple[SlurmHook, str], slurm_world: SlurmWorld
) -> None:
    """5 shards under an emulated MaxArraySize of 2 run as 3 submissions (2 + 2 + 1), each
    with indices from 0; shard 3 (part 2's index 1) fails and the retry resubmits just it."""
    hook, base = remote
    limits = hook.site_limits()  # the real controller's, read with scontrol
    assert limits.max_array_size > 2 and limits.max_job_count > 5
    state, result = run_task(
        submit_op(
            base,
            "split",
            script="split_array.sh",
            array_size="5",
            max_array_size=2,
            env={"MARK": f"{base}/split-mark"},
            retries=1,
            retry_delay=timedelta(0),
            on_retry_callback=[
                lambda ctx: OUTCOMES.__setitem__("split_retry", ctx.get("exception"))
            ],
        ),
        dag_id="split",
    )
    assert state == "success", result
    assert "failed array indices: [3]" in str(OUTCOMES["split_retry"])
    parts, retry = result["job_ids"][:3], result["job_ids"][3]
    name = f"t{TOKEN}-split"
    expected = sorted(
        [(f"{parts[0]}_{i}", name) for i in (0, 1)]
        + [(f"{parts[1]}_{i}", f"{name}+2") for i in (0, 1)]
        + [(f"{parts[2]}_0", f"{name}+4")]
    )
    until(
        lambda: (
            sorted((r[0], r[2]) for r in sacct_rows(slurm_world, "-j", ",".join(parts))) == expected
        )
    )
    until(
        lambda: (
            [(r[0], r[2]) for r in sacct_rows(slurm_world, "-j", retry)]
            == [(f"{retry}_1", f"{name}+2")]
        )
    )
    assert result["counts"] == {"COMPLETED": 5}  # shard 3 judged by the retry's row
    assert hook.read_text(result["log_path"].replace("%A", retry).replace("%a", "1")) == "shard 3\n"


def test_array_over_max_job_count_runs_its_parts_one_after_another(
    remote: tuple[SlurmHook, str], slurm_world: SlurmWorld
) -> None:
    """3 shards under an emulated MaxJobCount of 1: 3 one-index submissions, each waiting
    for the previous one (``--dependency=afterany``), so only one part is ever queued or
    running; on the 2-core bed independent parts would overlap. Every shard runs once."""
    hook, base = remote
    state, result = run_task(
        submit_op(base, "chain", script="chain_part.sh", array_size="3", max_job_count=1),
        dag_id="chain",
    )
    assert state == "success", result
    parts = result["job_ids"]
    assert len(parts) == 3, parts
    rows = until(
        lambda: (
            (r := sacct_rows(slurm_world, "-j", ",".join(parts), fields="JobID,State,Start,End"))
            and [x[1] for x in r].count("COMPLETED") == 3
            and r
        )
    )
    span = {r[0].split("_")[0]: (r[2], r[3]) for r in rows}
    for earlier, later in zip(parts, parts[1:]):
        assert span[later][0] >= span[earlier][1], span  # started once the previous ended
    logs = [hook.read_text(result["log_path"].replace("%A", p).replace("%a", "0")) for p in parts]
    assert logs == [f"shard {k}\n" for k in range(3)]


def test_sensor_sees_time_limit(remote: tuple[SlurmHook, str], timeout_job: str) -> None:
    """Last on purpose: the --time=1 job started with the module is killed after ~75 s."""
    _, base = remote
    state, exc = run_task(
        lambda: SlurmJobSensor(
            task_id="wait",
            ssh_conn_id="hpc_ssh",
            job_id=timeout_job,
            log_path=f"{base}/timeout-%j.out",
            poke_interval=1,
            max_poll_interval=2,
        ),
        dag_id="timeout",
    )
    assert state == "failed"
    assert "TIMEOUT" in str(exc) and "sleeping 600" in str(exc)


def test_sensor_poke_mode(remote: tuple[SlurmHook, str]) -> None:
    hook, base = remote
    job_id = hook.submit(
        f"{base}/ok.sh",
        job_name=f"t{TOKEN}-poke",
        resources=RES,
        output=f"{base}/poke-%j.out",
        env={"FOO": "poked"},
    )
    state, result = run_task(
        lambda: SlurmJobSensor(
            task_id="wait",
            ssh_conn_id="hpc_ssh",
            job_id=f"['{job_id}']",
            deferrable=False,
            poke_interval=1,
            log_path=f"{base}/poke-%j.out",
        ),
        dag_id="poke",
    )
    assert state == "success", result
    assert result["counts"] == {"COMPLETED": 1}
