"""The parsers over real SLURM output of both versions the project runs on: the native 22.05
bed and the 24.11 cluster (captured by golden/capture.py; the same jobs on each). What
differs between versions must read the same once parsed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpc_pipeline.slurm.jobs import JobState
from hpc_pipeline.slurm.parse import parse_sacct, parse_squeue
from hpc_pipeline.slurm.signals import signal_note, signal_notes
from hpc_pipeline.slurm.states import Verdict, verdict

GOLDEN = Path(__file__).parent / "golden"
VERSIONS = ["22.05", "24.11"]
S = "\x1f"


def golden(version: str, name: str) -> str:
    return (GOLDEN / f"slurm-{version}" / name).read_text()


def by_name(jobs: list[JobState]) -> dict[str, list[JobState]]:
    out: dict[str, list[JobState]] = {}
    for job in jobs:
        out.setdefault(job.name.removeprefix("golden-"), []).append(job)
    return out


@pytest.mark.parametrize("version", VERSIONS)
def test_sacct_final_states_exit_codes_and_nodes(version: str) -> None:
    jobs = by_name(parse_sacct(golden(version, "sacct-ended.txt")))
    meta = json.loads(golden(version, "jobs.json"))
    single = {name: js[0] for name, js in jobs.items() if name != "array"}
    assert {n: (j.state, j.exit_code) for n, j in single.items()} == {
        "completed": ("COMPLETED", "0:0"),
        "exit3": ("FAILED", "3:0"),
        "sigkill": ("FAILED", "0:9"),
        "child_sigkill": ("FAILED", "9:0"),
        "cancelled": ("CANCELLED", "0:0"),  # "CANCELLED by <uid>" in the raw text
        "timeout": ("TIMEOUT", "0:0"),
        "dependency": ("PENDING", "0:0"),
    }
    assert f"CANCELLED by {meta['submit_uid']}" in golden(version, "sacct-ended.txt")
    assert {n: verdict(j.state) for n, j in single.items()} == {
        "completed": Verdict.SUCCESS,
        "exit3": Verdict.FAILURE,
        "sigkill": Verdict.FAILURE,
        "child_sigkill": Verdict.FAILURE,
        "cancelled": Verdict.FAILURE,
        "timeout": Verdict.FAILURE,
        "dependency": Verdict.WAIT,
    }
    assert all(j.node for n, j in single.items() if n != "dependency")
    assert single["dependency"].node is None  # "None assigned"
    assert single["dependency"].start_time is None and (single["timeout"].elapsed_s or 0) >= 60
    assert single["completed"].job_id == meta["jobs"]["completed"]


@pytest.mark.parametrize("version", VERSIONS)
def test_array_ids_with_a_throttle_expand_to_their_indices(version: str) -> None:
    """``123_[8-100%10]``: the array's pending rest in one line, one JobState per index."""
    raw = golden(version, "sacct-running.txt")
    array = json.loads(golden(version, "jobs.json"))["jobs"]["array"]
    pending_line = next(line for line in raw.splitlines() if line.startswith(f"{array}_["))
    assert pending_line.split(S)[0].endswith("-100%10]")
    jobs = [j for j in parse_sacct(raw) if j.array_job_id == array]
    # accounting's pending range may still hold an index that already runs (its own line)
    assert sorted({j.array_index for j in jobs if j.array_index is not None}) == list(range(5, 101))
    assert {j.state for j in jobs if j.node is None} == {"PENDING"}
    assert {j.state for j in jobs if j.node} == {"RUNNING"}
    assert {
        j.state for j in parse_sacct(golden(version, "sacct-ended.txt")) if j.array_job_id == array
    } == {"CANCELLED"}


@pytest.mark.parametrize("version", VERSIONS)
def test_squeue_exit_codes_read_alike_in_both_versions(version: str) -> None:
    """22.05's squeue prints the raw wait status (768, 9, 35072), 24.11's ``3:0``, ``0:9``,
    ``137:0``: both parse to sacct's ``exit:signal`` form."""
    raw = golden(version, "squeue-running.txt")
    codes = {"22.05": ("768", "35072"), "24.11": ("3:0", "137:0")}[version]
    assert all(f"{S}{c}{S}" in raw for c in codes)
    jobs = {n: js[0] for n, js in by_name(parse_squeue(raw)).items() if n != "array"}
    assert {n: (j.state, j.exit_code) for n, j in jobs.items()} == {
        "completed": ("COMPLETED", "0:0"),
        "exit3": ("FAILED", "3:0"),
        "sigkill": ("FAILED", "0:9"),
        "child_sigkill": ("FAILED", "137:0"),
        "cancelled": ("CANCELLED", "0:15"),
        "timeout": ("RUNNING", "0:0"),
        "dependency": ("PENDING", "0:0"),
    }
    assert {j.stdout for j in jobs.values()} == {"/dev/null"}
    assert jobs["dependency"].reason == "DependencyNeverSatisfied"


@pytest.mark.parametrize("version", VERSIONS)
def test_pending_array_indices_keep_their_reason(version: str) -> None:
    pending = [
        j
        for j in parse_squeue(golden(version, "squeue-running.txt"))
        if j.state == "PENDING" and j.array_index is not None
    ]
    assert pending and {j.reason for j in pending} == {"Resources"}
    assert all(j.node is None and j.start_time is None for j in pending)
    # the controller's short form, as `squeue -o %i` prints it
    assert "_[" in golden(version, "squeue-pending-running.txt")
    assert "DependencyNeverSatisfied" in golden(version, "squeue-pending-ended.txt")


@pytest.mark.parametrize("version", VERSIONS)
def test_signal_exits_are_explained(version: str) -> None:
    jobs = {n: js[0] for n, js in by_name(parse_sacct(golden(version, "sacct-ended.txt"))).items()}
    note = signal_note(jobs["sigkill"].exit_code)
    assert note is not None and "killed by signal 9 (SIGKILL)" in note
    assert "OOM killer" in note and "scancel --signal" in note and "admin" in note
    assert signal_note(jobs["exit3"].exit_code) is None
    assert signal_note(jobs["completed"].exit_code) is None
    squeue = {
        n: js[0] for n, js in by_name(parse_squeue(golden(version, "squeue-running.txt"))).items()
    }
    assert "signal 15 (SIGTERM)" in (signal_note(squeue["cancelled"].exit_code) or "")
    assert "signal 9 (SIGKILL)" in (signal_note(squeue["child_sigkill"].exit_code) or "")


def test_signal_notes_dedupe_and_skip_plain_exits() -> None:
    assert signal_notes(["0:9", "3:0", "0:9", "", "None"]) == [signal_note("0:9")]
    assert "SIGSEGV" in (signal_note("0:11") or "") and "crashed" in (signal_note("0:11") or "")
    assert "unknown" in (signal_note("0:99") or "")


@pytest.mark.parametrize("state", ["EXPEDITING", "WEIRD_FUTURE_STATE"])
def test_states_of_newer_versions_are_not_terminal(state: str) -> None:
    """25.11 adds EXPEDITING; a 24.11 line with it in place of RUNNING neither passes nor
    fails the job."""
    line = next(
        line
        for line in golden("24.11", "sacct-running.txt").splitlines()
        if f"{S}RUNNING{S}" in line
    )
    (job,) = parse_sacct(line.replace(f"{S}RUNNING{S}", f"{S}{state}{S}"))
    assert job.state == state and verdict(job.state) is Verdict.UNKNOWN


def test_null_paths_of_24_05_are_no_paths() -> None:
    """From 24.05 squeue prints ``(null)`` for a StdOut it does not know (e.g. an salloc job)."""
    line = golden("24.11", "squeue-running.txt").splitlines()[0]
    cols = line.split(S)
    cols[6] = "(null)"
    (job,) = parse_squeue(S.join(cols))
    assert job.stdout is None
