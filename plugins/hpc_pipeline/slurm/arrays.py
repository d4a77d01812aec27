"""A day's job array under the site's limits: ``--array`` specs and the split into
submissions when the array is larger than the controller accepts at once."""

from __future__ import annotations

from collections.abc import Sequence

from hpc_pipeline.slurm.jobs import SiteLimits

#: Set in every array job's environment: its shard is SLURM_ARRAY_TASK_ID + this offset.
INDEX_OFFSET_ENV = "ARRAY_INDEX_OFFSET"


def parse_array_size(value: int | str | None, name: str = "array_size") -> int | None:
    """A rendered count (templates render to strings); ``None``/``""`` = not given."""
    if value is None or value == "":
        return None
    size = int(value)
    if size < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return size


def index_spec(indices: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2,5"`` (short ``--array`` specs for big retries)."""
    parts: list[str] = []
    for i in sorted(indices):
        if parts and parts[-1].split("-")[-1] == str(i - 1):
            parts[-1] = f"{parts[-1].split('-')[0]}-{i}"
        else:
            parts.append(str(i))
    return ",".join(parts)


def lower_limits(
    site: SiteLimits, max_array_size: int | None, max_job_count: int | None
) -> SiteLimits:
    """The controller's limits, lowered by an operator's overrides (a QOS cap, a test)."""
    return SiteLimits(
        max_array_size=min(site.max_array_size, max_array_size or site.max_array_size),
        max_job_count=min(site.max_job_count, max_job_count or site.max_job_count),
    )


def array_chunks(array_size: int, limits: SiteLimits) -> list[tuple[int, int]]:
    """(offset, count) of each submission a day's array is split into.

    A submission's indices run 0..count-1 (SLURM refuses an index >= ``MaxArraySize``, so
    index 1500 of a day cannot be submitted as such): its job computes its shard as
    ``SLURM_ARRAY_TASK_ID + offset``. ``MaxJobCount`` bounds a submission too, since every
    index counts as a job."""
    limit = max(1, min(limits.max_array_size, limits.max_job_count))
    return [(offset, min(limit, array_size - offset)) for offset in range(0, array_size, limit)]


def chunk_name(job_name: str, offset: int) -> str:
    """The job name of the submission starting at ``offset``: how a retry or a reattach
    finds each part of a split array (and its offset) from SLURM alone."""
    return job_name if offset == 0 else f"{job_name}+{offset}"
