"""The sentences a red SLURM task adds to its message (no bed needed): what each failure
state means, an out-of-memory kill recognised from the log where SLURM says FAILED, and a
full staging filesystem named only when it is full."""

from __future__ import annotations

from typing import cast

from hpc_pipeline.hooks.slurm import SlurmHook
from hpc_pipeline.operators.slurm_watch import full_disk_note
from hpc_pipeline.slurm.states import explain

SLURMSTEPD_OOM = (
    "slurmstepd-vm: error: StepId=2.batch exceeded memory limit "
    "(430804992 > 209715200), being killed\n"
)


def test_explain_names_the_limit_and_the_remedy() -> None:
    assert explain(["TIMEOUT", "TIMEOUT"]) == [
        "TIMEOUT: the job hit its time limit (sbatch --time; raise resources.<step>.time, "
        "then clear the task: a shard resumes after its last finished clip)"
    ]
    assert explain(["FAILED"]) == []
    (oom,) = explain(["FAILED"], SLURMSTEPD_OOM)  # no cgroups: FAILED 0:9 + this line
    assert oom.startswith("OUT_OF_MEMORY: ") and "resources.<step>.mem" in oom
    assert explain(["OUT_OF_MEMORY"], SLURMSTEPD_OOM) == [oom]
    assert [n.split(":")[0] for n in explain(["NODE_FAIL", "CANCELLED by 1001"])] == ["NODE_FAIL"]


class _Df:
    def __init__(self, free: int, total: int) -> None:
        self.space = (free, total, "/scratch")

    def free_space(self, path: str) -> tuple[int, int, str]:
        return self.space


def _df(free: int, total: int) -> SlurmHook:
    """A hook whose filesystem has ``free`` of ``total`` bytes (the one call the note makes)."""
    return cast(SlurmHook, _Df(free, total))


def test_full_disk_note_only_when_full() -> None:
    tib = 1 << 40
    note = full_disk_note(_df(0, 4 << 20), "/scratch/d/logs")
    assert note and note.startswith(
        "STAGING FULL: the filesystem holding /scratch/d/logs (mounted at /scratch) has 0 KiB"
    )
    assert full_disk_note(_df(10 << 20, 100 * tib), "/s") is not None
    assert full_disk_note(_df(tib, 100 * tib), "/s") is None  # 1 % free: not full
    assert full_disk_note(_df(3 << 20, 100 << 20), "/s") is None  # 3 % of a small disk
