"""Splitting a day's array at the site's limits (pure parts; the real-SLURM run of a split
array is ``test_slurm_real.py::test_split_array_retries_only_the_failed_shard``)."""

from __future__ import annotations

import pytest

from hpc_pipeline.hooks.slurm import SlurmHook
from hpc_pipeline.slurm.arrays import array_chunks, chunk_name
from hpc_pipeline.slurm.errors import SlurmError
from hpc_pipeline.slurm.jobs import SiteLimits, log_path, with_offsets
from hpc_pipeline.slurm.parse import parse_site_limits
from hpc_pipeline.slurm.states import Verdict
from hpc_pipeline.slurm.verdict import array_plan, judge
from hpc_pipeline.triggers.slurm import SlurmJobTrigger
from support import job_row as _job

S = "\x1f"
CONFIG = """Configuration data as of 2026-12-02T06:30:00
MaxArraySize            = 1001
MaxDBDMsgs              = 20008
MaxJobCount             = 10000
MaxJobId                = 67043328
"""


def test_site_limits_are_read_from_scontrol_show_config() -> None:
    assert parse_site_limits(CONFIG) == SiteLimits(max_array_size=1001, max_job_count=10000)
    with pytest.raises(SlurmError, match="MaxJobCount"):
        parse_site_limits("MaxArraySize = 5\n")


def test_chunks_respect_the_smaller_limit() -> None:
    assert array_chunks(400, SiteLimits(1001, 10000)) == [(0, 400)]
    assert array_chunks(2000, SiteLimits(1001, 10000)) == [(0, 1001), (1001, 999)]
    assert array_chunks(5, SiteLimits(2, 10000)) == [(0, 2), (2, 2), (4, 1)]
    assert array_chunks(5, SiteLimits(1001, 3)) == [(0, 3), (3, 2)]
    # every index of every part is below MaxArraySize, and the parts cover the day once
    for size in (1, 999, 1001, 1002, 3003):
        chunks = array_chunks(size, SiteLimits(1001, 10000))
        assert all(count <= 1001 for _, count in chunks)
        assert [o + i for o, c in chunks for i in range(c)] == list(range(size))
    assert chunk_name("audio-audio-2024-01-15-ab", 0) == "audio-audio-2024-01-15-ab"
    assert chunk_name("audio-audio-2024-01-15-ab", 1001) == "audio-audio-2024-01-15-ab+1001"


def test_offsets_give_whole_array_indices_and_keep_slurm_ids() -> None:
    jobs = [
        _job("7", 0, "COMPLETED", "n"),
        _job("8", 0, "FAILED", "n+2"),
        _job("9", None, "RUNNING"),
    ]
    shifted = with_offsets(jobs, {"8": 2})
    assert [(j.job_id, j.array_index) for j in shifted] == [("7_0", 0), ("8_0", 2), ("9", None)]
    # the log of index 2 of the day is SLURM's 8_0 (what %a expands to in --output)
    assert log_path("/l/x-%A_%a.out", shifted[1]) == "/l/x-8_0.out"


def test_split_array_is_judged_over_the_whole_day() -> None:
    """Two parts of 2 + 1 indices: no verdict until index 2 (part 2's index 0) is reported;
    the retry of the failed index of part 2 supersedes it."""
    part1 = [_job("7", 0, "COMPLETED", "n"), _job("7", 1, "COMPLETED", "n")]
    assert judge(["7", "8"], with_offsets(part1, {"8": 2}), array_size=3)[0] is Verdict.UNKNOWN
    failed = part1 + [_job("8", 0, "FAILED", "n+2")]
    overall, latest, _ = judge(["7", "8"], with_offsets(failed, {"8": 2}), array_size=3)
    assert overall is Verdict.FAILURE and [j.array_index for j in latest] == [0, 1, 2]
    retried = failed + [_job("12", 0, "COMPLETED", "n+2")]
    offsets = {"8": 2, "12": 2}
    assert (
        judge(["7", "8", "12"], with_offsets(retried, offsets), array_size=3)[0] is Verdict.SUCCESS
    )
    # the operator's plan sees the same: nothing left once part 2's retry completed
    assert array_plan(with_offsets(failed, offsets), 3) == (["7"], [2])
    assert array_plan(with_offsets(retried, offsets), 3) == (["7", "12"], [])


def test_query_counts_indices_per_part(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parts each start at index 0: accounting listing all 3 indices of a 2 + 1 split needs
    no squeue call; listing 2 of them does (one call)."""
    rest = f"{S}{S}{S}{S}"  # Submit, Start, Reason: empty
    rows = [
        f"7_0{S}COMPLETED{S}0:0{S}vm{S}1{S}cpu=1{rest}n\n",
        f"7_1{S}COMPLETED{S}0:0{S}vm{S}1{S}cpu=1{rest}n\n",
        f"8_0{S}RUNNING{S}0:0{S}vm{S}1{S}cpu=1{rest}n+2\n",
    ]
    calls: list[str] = []
    answer = ["".join(rows)]

    def run(self: SlurmHook, argv: list[str], timeout: float | None = None) -> tuple[int, str, str]:
        calls.append(argv[0])
        return 0, answer[0] if argv[0] == "sacct" else "", ""

    monkeypatch.setattr(SlurmHook, "run", run)
    hook = SlurmHook.__new__(SlurmHook)
    assert len(hook.query(["7", "8"], array_size=3)) == 3 and calls == ["sacct"]
    calls.clear()
    answer[0] = "".join(rows[:2])
    hook.query(["7", "8"], array_size=3)
    assert calls == ["sacct", "squeue"]


def test_trigger_carries_the_offsets() -> None:
    trig = SlurmJobTrigger(
        ssh_conn_id="x", job_ids=["7", "8"], array_size=3, index_offsets={"8": 2}
    )
    cls, kwargs = trig.serialize()
    assert SlurmJobTrigger(**kwargs).index_offsets == {"8": 2}


def test_a_retry_row_accounting_has_not_listed_yet_is_awaited() -> None:
    """Seen on the bed with 400 indices: the retry (job 609) of index 367 missing from one
    sacct poll while the first job's FAILED row of 367 is there. Without knowing which job
    runs which index, the old row stood in for it and failed the retry."""
    first = [_job("195", i, "COMPLETED" if i != 2 else "FAILED") for i in range(4)]
    listed = first + [_job("609", 1, "COMPLETED")]  # the retry ran 1 and 2; 2 not listed
    owners = {"195": "0,3", "609": "1-2"}
    overall, _, why = judge(["195", "609"], listed, array_size=4, job_indices=owners)
    assert overall is Verdict.UNKNOWN and why == "array indices not reported yet: [2]"
    done = listed + [_job("609", 2, "COMPLETED")]
    assert judge(["195", "609"], done, array_size=4, job_indices=owners)[0] is Verdict.SUCCESS
    trig = SlurmJobTrigger(ssh_conn_id="x", job_ids=["195", "609"], job_indices=owners)
    assert SlurmJobTrigger(**trig.serialize()[1]).job_indices == owners
