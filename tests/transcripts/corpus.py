"""Days of known transcripts, recorded through ``ResultsDbHook.record_day`` (the pipeline's
own load path), for the search and export tests."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from audio_hpc.contract import Clip, ClipResult, Manifest, Shard
from hpc_pipeline.hooks.results_db import DayLoad, JobRecord, ResultsDbHook
from support import create_db, drop_db, use_results_db

# day -> clip name -> (language, text) ; None = a failed clip
DAYS: dict[str, dict[str, tuple[str, str] | None]] = {
    "2025-03-01": {
        "a.m4a": (
            "en",
            "Climate change was mentioned twice. Climate change again, the climate is changing.",
        ),
        "b.m4a": ("en", "They talked about the weather and a change of climate."),
        "c.m4a": ("en", "A transcription of the meeting about budgets."),
        "d.m4a": None,
        "e.m4a": ("de", "Der Klimawandel wurde erwähnt."),
    },
    "2025-03-02": {
        "a.m4a": ("en", "Nobody mentioned the climate today; transcripts were short."),
        "b.m4a": ("en", "Climate, climate change, climate change, climate change everywhere."),
        "c.m4a": ("en", "It's O'Brien's turn; he said 'drop table' as a joke -- really."),
    },
}


def segments_of(text: str) -> list[dict[str, Any]]:
    """Two WhisperX-shaped segments per transcript (the halves of its words)."""
    words = text.split()
    half = max(1, len(words) // 2)
    parts = [" ".join(words[:half]), " ".join(words[half:])]
    return [
        {"start": 1.5 * i, "end": 1.5 * i + 1.25, "text": " " + p} for i, p in enumerate(parts) if p
    ]


def day_load(day: str, clips: dict[str, tuple[str, str] | None] | None = None) -> DayLoad:
    """``day``'s clips (``DAYS[day]`` unless given) as the DAG records them."""
    clips = DAYS[day] if clips is None else clips
    manifest = Manifest(
        date=day,
        plan_id="p1",
        source="/src",
        listed=len(clips),
        shards=[Shard(0, [Clip(f"{day}/{n}", n, f"/src/{day}/{n}", 1000) for n in clips])],
    )
    results = []
    for i, (name, outcome) in enumerate(clips.items()):
        common: dict[str, Any] = dict(
            clip_id=f"{day}/{name}",
            date=day,
            engine="whisperx",
            model="tiny.en",
            duration_s=10.0 + i,
            job_id="77",
            array_index=0,
            node="vm",
            finished_at=f"{day}T23:00:0{i}+00:00",
        )
        if outcome is None:
            results.append(
                ClipResult(
                    status="failed", error_kind="corrupt", error="moov atom not found", **common
                )
            )
        else:
            language, text = outcome
            results.append(
                ClipResult(
                    status="ok", language=language, text=text, segments=segments_of(text), **common
                )
            )
    jobs = [JobRecord("audio", "77", 0, "COMPLETED", "0:0", 12.0, "vm", 1)]
    return DayLoad(
        day=day,
        plan_id="p1",
        dag_run_id=f"run-{day}",
        manifest=manifest,
        results=results,
        jobs=jobs,
    )


@contextlib.contextmanager
def recorded_db(prefix: str, loads: Iterable[DayLoad]) -> Iterator[str]:
    """A fresh results DB (``<prefix>_<random>``, registered as ``audio_results_db``) with
    ``loads`` recorded through ``record_day``; yields its name, drops it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    create_db(name)
    use_results_db(name)
    try:
        hook = ResultsDbHook("audio_results_db")
        hook.migrate()
        for load in loads:
            hook.record_day(load)
        yield name
    finally:
        drop_db(name)
