"""``record_results`` streaming a modest day from the real test bed (tar over SSH, COPY into
PostgreSQL): the newest outcome per clip wins across plans and files, torn last lines and
shard summaries are ignored, and re-recording changes nothing."""

from __future__ import annotations

import posixpath
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from audio_hpc.contract import (
    Clip,
    ClipResult,
    Manifest,
    Shard,
    day_dir,
    shard_results_name,
    shard_summary_name,
)
from hpc_pipeline import steps
from hpc_pipeline.hooks.results_db import ResultsDbHook
from hpc_pipeline.hooks.slurm import SlurmHook

DAY = "2024-04-02"
CLIPS = 120  # 3 shards of 40


def _line(i: int, status: str, when: str, text: str = "") -> str:
    ok = status == "ok"
    return ClipResult(
        clip_id=f"{DAY}/c{i:03d}.m4a",
        date=DAY,
        status=status,
        engine="whisperx",
        model="tiny.en",
        language="en",
        duration_s=20.0,
        text=text if ok else "",
        segments=[{"start": s, "end": s + 1.0, "text": f"{text} {s}"} for s in range(3)]
        if ok
        else [],
        error_kind="" if ok else "corrupt",
        error="" if ok else "bad",
        job_id="9",
        array_index=i // 40,
        node="vm",
        finished_at=when,
    ).to_line()


@pytest.fixture
def staged(ssh_conn_id: str) -> Iterator[tuple[SlurmHook, steps.DayContext]]:
    """Two plans' results for one day on the bed's staging; removed afterwards."""
    hook = SlurmHook(ssh_conn_id)
    root = hook.resolve(f"record-tests/{uuid.uuid4().hex[:8]}")
    ctx = steps.DayContext(
        day=DAY,
        plan_id="p2",
        reprocess="failed",
        run_id="r",
        staging_root=root,
        day_dir=day_dir(root, DAY),
        release_root="",
    )
    clips = [Clip(f"{DAY}/c{i:03d}.m4a", f"c{i:03d}.m4a", "/src", 1) for i in range(CLIPS)]
    manifest = Manifest(
        date=DAY,
        plan_id="p2",
        source="test",
        listed=CLIPS,
        shards=[Shard(s, clips[s * 40 : (s + 1) * 40]) for s in range(3)],
    )
    hook.makedirs(posixpath.join(ctx.day_dir, "results", "p1"))
    hook.makedirs(posixpath.join(ctx.day_dir, "results", "p2"))
    hook.write_text(posixpath.join(ctx.day_dir, "manifest.json"), manifest.to_json())
    for s in range(3):
        # plan p1 (earlier): every clip failed; plan p2 (later): even clips ok, odd failed
        # again; clip 0 also has a stale ok line *after* its newest one in the same file
        p1 = "".join(
            _line(i, "failed", "2024-04-03T01:00:00+00:00") for i in range(s * 40, s * 40 + 40)
        )
        p2 = "".join(
            _line(
                i,
                "ok" if i % 2 == 0 else "failed",
                "2024-04-03T02:00:00+00:00",
                text=f"clip {i} new",
            )
            for i in range(s * 40, s * 40 + 40)
        )
        if s == 0:
            p2 += _line(0, "ok", "2024-04-03T00:30:00+00:00", text="stale")
        if s == 2:
            p2 += '{"clip_id": "2024-04-02/torn'  # a shard killed mid-write
        hook.write_text(posixpath.join(ctx.day_dir, "results", "p1", shard_results_name(s)), p1)
        hook.write_text(posixpath.join(ctx.day_dir, "results", "p2", shard_results_name(s)), p2)
        hook.write_text(posixpath.join(ctx.day_dir, "results", "p2", shard_summary_name(s)), "{}")
    yield hook, ctx
    hook.run(["rm", "-rf", "--", root])
    hook.close()


def _state(dsn: str) -> dict[str, list]:
    with psycopg.connect(dsn) as conn:
        return {
            "clips": conn.execute(
                "SELECT clip_id, status, finished_at, recorded_at FROM audio_clips ORDER BY 1"
            ).fetchall(),
            "transcripts": conn.execute(
                "SELECT clip_id, text, segments, word_count, "
                "recorded_at FROM transcripts ORDER BY 1"
            ).fetchall(),
        }


def test_newest_outcome_per_clip_streamed_once(
    staged: tuple[SlurmHook, steps.DayContext], results_db: str
) -> None:
    hook, ctx = staged
    db = ResultsDbHook("audio_results_db")
    db.migrate()
    summary = steps.record_results(hook, db, ctx, {"master": [], "transfer": [], "audio": []})
    assert (summary["clips_ok"], summary["clips_failed"], summary["clips_missing"]) == (60, 60, 0)
    state = _state(results_db)
    assert [c[0] for c in state["clips"]] == [f"{DAY}/c{i:03d}.m4a" for i in range(CLIPS)]
    assert all(c[1] == ("ok" if int(c[0][-7:-4]) % 2 == 0 else "failed") for c in state["clips"])
    texts = {t[0]: t for t in state["transcripts"]}
    assert len(texts) == 60 and texts[f"{DAY}/c000.m4a"][1] == "clip 0 new"  # not "stale"
    assert texts[f"{DAY}/c118.m4a"][2][2] == {"start": 2, "end": 3.0, "text": "clip 118 new 2"}
    assert texts[f"{DAY}/c118.m4a"][3] == 3
    steps.record_results(hook, db, ctx, {"master": [], "transfer": [], "audio": []})
    assert _state(results_db) == state
