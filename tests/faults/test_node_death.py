"""Fault: the node dies under a running shard, twice in one day.

The shard has finished a clip and works on the next when the node loses power: slurmd, every
slurmstepd and every job process are SIGKILLed at once (each stopped first, so none reports
a child's death: a dead node reports nothing). slurmctld is then told what it concludes on
its own after ``SlurmdTimeout`` (300 s on the bed): the node is DOWN. ``scontrol update
State=DOWN`` runs the same code in slurmctld as the timeout (the node made down, then its
jobs killed or requeued); only the reason differs. Then the power comes back: slurmd is
started as ``provision.sh start`` starts it (the pid file is gone, as after a reboot:
``/run`` is a tmpfs) and registers, and slurmctld returns the node to service
(``ReturnToService=2``), or the test resumes it.

1. Submitted with ``--no-requeue`` (a site with ``JobRequeue=0`` behaves alike): the job
   ends NODE_FAIL, ``audio`` is red saying so; the retry resubmits only the failed index.
2. The retry, as our sbatch calls go by default (the site's ``JobRequeue=1``): the node dies
   again under the resubmitted shard; SLURM requeues the job (same id, eligible again after
   the credential lifetime: 30 s on the bed, ``AuthInfo=cred_expire=30``; SLURM's default is
   120 s), the task keeps waiting, and the requeued shard resumes.

Every time the shard resumes after its last finished clip; the day ends with one result
line and one row per clip. The bed is one node shared by every test: the node dies only
when no other job is on it, and is healthy again (slurmd running, node up, slurm.conf
unchanged) when the test ends, passed or failed.
"""

from __future__ import annotations

import collections
import hashlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from faults_support import (
    DAY,
    Background,
    assert_recorded_once,
    load_dag,
    query,
    result_lines,
    run_day,
    shard_pids,
    staging_day,
)
from support import REPO

PROVISION = REPO / "hpc" / "devcluster" / "provision.sh"
SLURM_CONF = Path("/etc/slurm/slurm.conf")
HEALTHY = ("idle", "mixed", "allocated")
ALONE_TIMEOUT_S = 900  # how long the frozen shard waits for other tests' jobs to end
# ~3 min alone on the bed; each of the two deaths may wait ALONE_TIMEOUT_S for the bed
pytestmark = [pytest.mark.timeout(3 * ALONE_TIMEOUT_S), pytest.mark.alone]


def _sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60).stdout


def _field(pattern: str, text: str, flags: int = 0) -> str:
    """The first group of ``pattern`` in ``text`` (which must hold it)."""
    found = re.search(pattern, text, flags)
    assert found, f"{pattern!r} not in {text[:2000]!r}"
    return found.group(1)


def _slurm_config(key: str) -> str:
    return _field(rf"^{key}\s*=\s*(\S+)", _sh("scontrol", "show", "config"), re.M)


def audio_job(prefix: str) -> tuple[str, str] | None:
    """(array job id, node) of this test's running audio shard, if any."""
    for line in _sh("squeue", "-h", "-t", "RUNNING", "-o", "%A|%j|%N").splitlines():
        jid, name, node = line.split("|")
        if name.startswith(f"{prefix}-audio-"):
            return jid, node
    return None


def wait_alone(prefix: str) -> None:
    """Until the controller holds no job but this test's (pending ones included: one could
    start on the node at any moment). Other sessions share this bed; CI runs tests serially."""
    deadline = time.monotonic() + ALONE_TIMEOUT_S
    while others := [
        n for n in _sh("squeue", "-h", "-o", "%j").split() if not n.startswith(prefix)
    ]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"other jobs on the bed for {ALONE_TIMEOUT_S} s: {others[:5]}")
        time.sleep(1)


def _parents() -> dict[int, int]:
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    return parents


def _tree(roots: list[int]) -> list[int]:
    """``roots`` and their descendants, parents before children."""
    parents = _parents()
    out = list(roots)
    for pid in out:
        out += [child for child, parent in parents.items() if parent == pid]
    return out


def _stepds() -> list[int]:
    """The bed's step daemons: those of containers on this machine (own pid namespace,
    their own SLURM) are not on the node."""
    ours = os.readlink("/proc/self/ns/pid")
    pids = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if (
                comm.read_text().strip() == "slurmstepd"
                and os.readlink(comm.parent / "ns" / "pid") == ours
            ):
                pids.append(int(comm.parent.name))
        except OSError:
            continue
    return pids


def power_loss(slurmd_pidfile: Path) -> list[int]:
    """SIGKILL slurmd, every slurmstepd and all their descendants; return the pids killed.

    Each step daemon and process is SIGSTOPped first, parents before children, until no new
    one appears: a step daemon that saw its job die would report the job ended to slurmctld
    (FAILED, not a node failure), and a stopped process forks nothing."""
    slurmd = int(slurmd_pidfile.read_text())
    stopped: list[int] = []
    while fresh := [p for p in _tree(_stepds()) if p not in stopped]:
        for pid in fresh:
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                pass
        stopped += fresh
    for pid in (slurmd, *stopped):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    slurmd_pidfile.unlink()  # /run is a tmpfs: a rebooted node has no stale pid files
    return [slurmd, *stopped]


def slurmd_alive(pidfile: Path) -> bool:
    """The pid file names a live process (a zombie is dead: ``kill -0`` would say alive)."""
    try:
        stat = Path(f"/proc/{int(pidfile.read_text())}/stat").read_text()
    except (OSError, ValueError):
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def node_state(node: str) -> tuple[str, str]:
    """(state, reason) as sinfo reports the node, e.g. ("down*", "Not responding")."""
    line = _sh("sinfo", "-h", "-N", "-n", node, "-o", "%T|%E").splitlines()[0]  # one per partition
    state, _, reason = line.partition("|")
    return state, reason


def restore(node: str) -> str:
    """Power back: slurmd started as ``provision.sh start`` starts it (``provision.sh slurmd``:
    slurmd alone, so that no daemon another test stopped on purpose is started), then the
    node resumed if slurmctld did not return it to service on registration. Returns how it
    came back."""
    started = subprocess.run(
        ["bash", str(PROVISION), "slurmd"], capture_output=True, text=True, timeout=180
    )
    how = "returned to service on registration"
    if not node_state(node)[0].startswith(HEALTHY):
        _sh("scontrol", "update", f"NodeName={node}", "State=RESUME")
        how = "resumed"
    deadline = time.monotonic() + 60
    while not (state := node_state(node))[0].startswith(HEALTHY) or state[0].endswith("*"):
        assert time.monotonic() < deadline, f"node {node} not back: {state}; {started.stderr}"
        time.sleep(0.5)
    return how


def node_dies(prefix: str, slurmd_pidfile: Path, shard: list[int]) -> dict[str, str]:
    """The fault, once ``shard`` (pids) works on a clip: freeze it there, wait until the bed
    runs nothing else, cut the power, mark the node DOWN, look at the job, power back."""
    for pid in shard:
        os.kill(pid, signal.SIGSTOP)
    try:
        wait_alone(prefix)
        jid, node = audio_job(prefix) or ("", "")
        assert jid, "the audio shard is not running"
    except BaseException:
        for pid in shard:
            os.kill(pid, signal.SIGCONT)  # let the day finish: the test fails on this error
        raise
    down_at = time.monotonic()
    try:
        killed = power_loss(slurmd_pidfile)
        _sh(
            "scontrol",
            "update",
            f"NodeName={node}",
            "State=DOWN",
            "Reason=fault test: power lost (slurmd and the job SIGKILLed)",
        )
        job = _sh("scontrol", "-o", "show", "job", jid)
        seen = {
            "job_id": jid,
            "node": node,
            "killed": str(len(killed)),
            "state": _field(r"JobState=(\S+)", job),
            "restarts": _field(r"Restarts=(\d+)", job),
            "node_state": _field(r"State=(\S+)", _sh("scontrol", "-o", "show", "node", node)),
        }
    finally:
        how = restore(node)
    return {**seen, "back": how, "down_s": f"{time.monotonic() - down_at:.1f}"}


def attempts(job_id: str) -> list[str]:
    """State of every attempt of ``job_id``'s index 0, oldest first (sacct -D: requeued
    attempts too)."""
    out = _sh("sacct", "-D", "-X", "-n", "-P", "-o", "JobID,State", "-j", job_id)
    return [line.split("|")[1] for line in out.splitlines() if line.split("|")[0] == f"{job_id}_0"]


def test_node_dies_under_a_running_shard(
    clip_by_clip_config: Callable[..., Path],
    results_db: str,
    source_day: list[str],
    tag: str,
    capfd: pytest.CaptureFixture,
) -> None:
    day_dir = staging_day(tag)
    prefix = f"f{tag}"
    conf_before = hashlib.sha256(SLURM_CONF.read_bytes()).hexdigest()
    slurmd_pidfile = Path(_slurm_config("SlurmdPidFile"))
    assert _slurm_config("JobRequeue") == "1"  # part 2 is the site's requeue
    node = _sh("sinfo", "-h", "-N", "-o", "%N").split()[0]  # the bed's one node
    try:
        # 1. --no-requeue: the node dies after the first clip; the job ends NODE_FAIL.
        died = Background(
            lambda: result_lines(day_dir) and shard_pids(str(day_dir.parent)),
            lambda pids: node_dies(prefix, slurmd_pidfile, pids),
            timeout_s=900,
            poll_s=0.05,
        )
        run = run_day(
            load_dag(clip_by_clip_config(resources={"audio": {"extra_args": ["--no-requeue"]}}))
        )
        first = died.result(timeout_s=ALONE_TIMEOUT_S + 300)
        log = "".join(capfd.readouterr())
        print(f"first death: {first}")
        assert (first["state"], first["restarts"]) == ("NODE_FAIL", "0"), first
        assert first["node_state"].startswith("DOWN"), first  # e.g. DOWN*+COMPLETING
        assert run.tasks["audio"] == "failed", run.tasks
        assert f"{first['job_id']}_0 NODE_FAIL exit=" in log, log[-4000:]
        assert f"node {first['node']} failed under job {first['job_id']}_0 (NODE_FAIL)" in log
        assert "NODE_FAIL: the node running the job stopped answering; clear the task" in log
        assert "failed array indices: [0]" in log
        assert attempts(first["job_id"]) == ["NODE_FAIL"]
        done_before = [line["clip_id"] for line in result_lines(day_dir)]
        assert len(done_before) == 1, done_before  # the first clip; the second was under way
        # record_results ran anyway (all done): the day is recorded as incomplete
        assert query(results_db, "SELECT status, clips_ok, clips_missing FROM audio_days") == [
            ("incomplete", 1, 1)
        ]

        # 2. The retry (site default: requeue) resubmits index 0 only; the node dies again
        #    once that shard has started; SLURM requeues it and the task waits it out.
        def resumed_shard() -> list[int] | None:
            job = audio_job(prefix)
            logs = list((day_dir / "logs").glob(f"*-{job[0]}_0.out")) if job else []
            started = logs and "1 already done" in logs[0].read_text()
            return (
                shard_pids(str(day_dir.parent))
                if job and started and job[0] != first["job_id"]
                else None
            )

        died = Background(
            resumed_shard,
            lambda pids: node_dies(prefix, slurmd_pidfile, pids),
            timeout_s=900,
            poll_s=0.05,
        )
        run = run_day(load_dag(clip_by_clip_config()))
        second = died.result(timeout_s=ALONE_TIMEOUT_S + 300)
        log = "".join(capfd.readouterr())
        print(f"second death: {second}")
        retry = second["job_id"]
        assert re.findall(
            r"Submitted SLURM job (\d+) \(array ([^)]*)\) named '[^']*-audio-", log
        ) == [(retry, "0")], log[-4000:]
        assert second["state"] == "PENDING" and second["restarts"] == "1", second  # requeued
        # the trigger log names the node lost under the requeued shard
        assert (
            f"node {second['node']} failed under job {retry}_0 (NODE_FAIL); SLURM requeued" in log
        )
        assert attempts(retry) == ["NODE_FAIL", "COMPLETED"]
        assert run.state == "success", run.tasks
        (retry_log,) = (day_dir / "logs").glob(f"*-{retry}_0.out")
        assert "2 clips, 1 already done, 1 to do" in retry_log.read_text()  # the requeued run

        per_clip = collections.Counter(line["clip_id"] for line in result_lines(day_dir))
        assert per_clip == {f"{DAY}/{n}": 1 for n in source_day}, per_clip
        assert_recorded_once(results_db, source_day)
        # each attempt's job once, the failed one included; the requeued job by its last run
        assert sorted(
            query(
                results_db, "SELECT job_id, array_index, state FROM slurm_jobs WHERE step = 'audio'"
            )
        ) == sorted([(first["job_id"], 0, "NODE_FAIL"), (retry, 0, "COMPLETED")])
    finally:
        if not (node_state(node)[0] in HEALTHY and slurmd_alive(slurmd_pidfile)):
            restore(node)
        print(_sh("sinfo", "-N", "-o", "%N %T %E"))
    assert node_state(node)[0] in HEALTHY and slurmd_alive(slurmd_pidfile)
    assert hashlib.sha256(SLURM_CONF.read_bytes()).hexdigest() == conf_before
