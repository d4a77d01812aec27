"""Response shapes of the monitoring API (what its OpenAPI schema documents)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, Field

DayStatus = Literal["complete", "partial", "incomplete", "not_run"]
ClipStatus = Literal["ok", "failed"]


class DayCounts(BaseModel):
    """A day's numbers as ``audio_days`` holds them (None for a day never recorded)."""

    clips_listed: int | None = Field(None, description="clips found at the source")
    clips_planned: int | None = Field(None, description="clips the last plan sent to the cluster")
    clips_skipped: int | None = Field(None, description="left out as already done")
    clips_ok: int | None = None
    clips_failed: int | None = None
    clips_missing: int | None = Field(None, description="planned but without an outcome")
    failed_by_reason: dict[str, int] | None = Field(None, description="error kind -> clips")
    audio_seconds: float | None = Field(None, description="audio transcribed (ok clips)")
    gpu_seconds: float | None = Field(None, description="GPUs x elapsed of the audio step")
    real_time_factor: float | None = Field(None, description="audio s per shard wall s")


class DaySummary(DayCounts):
    day: dt.date
    status: DayStatus
    queue_wait_s: dict[str, float] = Field(
        default_factory=dict,
        description="step -> longest queue wait (sacct Submit -> Start) of its jobs that day",
    )


class DayList(BaseModel):
    start: dt.date
    end: dt.date
    days: list[DaySummary] = Field(description="every calendar day of the range, oldest first")


class StepJob(BaseModel):
    """One SLURM job, or one index of a job array, of a step (failed attempts included)."""

    step: str
    job_id: str
    array_index: int = Field(description="-1 for a job that is not an array")
    state: str
    exit_code: str | None
    node: str | None
    gpus: int
    gpu_seconds: float
    elapsed_s: float | None = Field(description="run time (sacct ElapsedRaw)")
    submitted_at: dt.datetime | None = Field(description="sacct Submit, cluster local time")
    started_at: dt.datetime | None = Field(description="sacct Start, cluster local time")
    queue_wait_s: float | None = Field(description="Submit -> Start; None if not measured")


class NodeCounts(BaseModel):
    """What ran on one compute node during a day."""

    node: str
    array_indices: int = Field(
        description="array index runs of the audio step on this node (every attempt, "
        "failed and requeued ones included)"
    )
    array_indices_failed: int = Field(description="of those, runs that did not complete")
    clips: int = Field(description="clips whose recorded outcome came from this node")
    clips_failed: int


def node_counts(jobs: list[dict[str, Any]], clips: list[dict[str, Any]]) -> list[NodeCounts]:
    """Per node, by name: the array index runs of ``jobs`` (``slurm_jobs`` rows: ``node``,
    ``array_index``, ``state``) and the clips of ``clips`` (rows ``node``, ``clips``,
    ``failed``: counts per node). Rows without a node count nowhere."""
    counts: dict[str, list[int]] = {}
    for job in jobs:
        index = job.get("array_index")
        if job.get("node") and index is not None and index >= 0:
            runs = counts.setdefault(job["node"], [0, 0, 0, 0])
            runs[0] += 1
            runs[1] += job.get("state") != "COMPLETED"
    for row in clips:
        if row.get("node"):
            per = counts.setdefault(row["node"], [0, 0, 0, 0])
            per[2] += int(row["clips"])
            per[3] += int(row["failed"])
    return [
        NodeCounts(
            node=node, array_indices=n[0], array_indices_failed=n[1], clips=n[2], clips_failed=n[3]
        )
        for node, n in sorted(counts.items())
    ]


class DayDetail(DayCounts):
    day: dt.date
    status: DayStatus
    plan_id: str | None
    dag_run_id: str | None
    wall_seconds: float
    recorded_at: dt.datetime
    throughput: float | None = Field(description="audio seconds per GPU second")
    jobs: list[StepJob]
    nodes: list[NodeCounts] = Field(
        default_factory=list,
        description="per compute node: the audio step's array index runs and the clips "
        "recorded from it",
    )


class Clip(BaseModel):
    clip_id: str
    status: ClipStatus
    error_kind: str | None
    error: str | None
    duration_s: float | None
    language: str | None
    engine: str | None
    model: str | None
    job_id: str | None
    array_index: int | None
    node: str | None
    finished_at: dt.datetime


class ClipPage(BaseModel):
    day: dt.date
    total: int = Field(description="clips matching the filters (all pages)")
    clips: list[Clip]
    next_after: str | None = Field(description="pass as `after` for the next page; None at the end")


class Transcript(BaseModel):
    clip_id: str
    day: dt.date
    text: str
    language: str | None
    model: str | None
    word_count: int
    duration_s: float | None
    segments: list[dict[str, Any]] = Field(description="[{start, end, text, words?}]")
    recorded_at: dt.datetime


class Health(BaseModel):
    results_db_reachable: bool
    last_complete_day: dt.date | None = None
    last_recorded_day: dt.date | None = None
    window_days: int
    days_missing: list[dt.date] = Field(
        default_factory=list, description="days of the window never recorded"
    )
    days_not_complete: list[dt.date] = Field(
        default_factory=list, description="days of the window partial or incomplete"
    )
    error: str | None = None


class SnippetPart(BaseModel):
    text: str
    match: bool = Field(description="a word the query matched (the page highlights it)")


class SearchHit(BaseModel):
    clip_id: str
    day: dt.date
    status: ClipStatus
    language: str | None
    duration_s: float | None
    rank: float = Field(description="ts_rank of the transcript for the query")
    snippet: list[SnippetPart] = Field(description="ts_headline: fragments of the transcript")


class SearchRanking(BaseModel):
    ranked: int = Field(description="how many matches were ranked (the hits are the best of them)")
    max_ranked: int = Field(description="order=rank ranks at most this many matches: the newest")
    all_matches: bool = Field(
        description="true: every match of the day range was ranked; false: only the newest "
        "`max_ranked`, back to `oldest_day` (narrow the day range to rank older ones)"
    )
    oldest_day: dt.date | None = Field(description="the day of the oldest match ranked")


class SearchPage(BaseModel):
    q: str
    tsquery: str = Field(description="the query as PostgreSQL understood it")
    order: Literal["rank", "recent"]
    ranking: SearchRanking | None = Field(
        description="order=rank: which matches were ranked; null for order=recent"
    )
    hits: list[SearchHit]
    next_after: str | None = Field(description="pass as `after` for the next page; None at the end")
