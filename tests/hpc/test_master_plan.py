"""The planner, in process: reprocess modes against the DB's done-list and results already on
staging, sharding, and refusing documents of an unknown schema version."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audio_hpc import plan as master_plan
from audio_hpc.contract import ClipResult, Manifest, Request

DATE = "2024-01-15"
NAMES = ["a.m4a", "b.mp4", "c.wav", "d.mp3", "e.m4a", "f.m4a"]


@pytest.fixture
def area(tmp_path: Path) -> tuple[Path, Path]:
    """(source root with one day of clips plus a non-audio file, staging root)."""
    day = tmp_path / "src" / DATE
    (day / "deep").mkdir(parents=True)
    for n in NAMES[:-1]:
        (day / n).write_bytes(b"x")
    (day / "deep" / NAMES[-1]).write_bytes(b"x")
    (day / "notes.txt").write_text("not a clip")
    return tmp_path / "src", tmp_path / "stage"


def _results(stage: Path, plan_id: str, statuses: dict[str, str]) -> None:
    path = stage / DATE / "results" / plan_id / "shard-0000.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        for name, status in statuses.items():
            fh.write(
                ClipResult(
                    clip_id=f"{DATE}/{name}",
                    date=DATE,
                    status=status,
                    finished_at="2024-01-16T00:00:00",
                ).to_line()
            )


def _plan(src: Path, stage: Path, request: Request | None, *extra: str) -> Manifest:
    if request:
        (stage / DATE).mkdir(parents=True, exist_ok=True)
        (stage / DATE / "request.json").write_text(request.to_json())
    assert (
        master_plan.main(
            [
                "--date",
                DATE,
                "--staging-root",
                str(stage),
                "--backend",
                "local",
                "--source-root",
                str(src),
                *extra,
            ]
        )
        == 0
    )
    return Manifest.from_json((stage / DATE / "manifest.json").read_text())


def _ids(m: Manifest) -> list[str]:
    return [c.clip_id.removeprefix(f"{DATE}/") for c in m.clips]


def test_no_request_plans_everything_in_stable_shards(area, capsys) -> None:
    src, stage = area
    m = _plan(src, stage, None, "--shard-size", "4")
    assert _ids(m) == ["a.m4a", "b.mp4", "c.wav", "d.mp3", "deep/f.m4a", "e.m4a"]
    assert [len(s.clips) for s in m.shards] == [4, 2] and m.plan_id == master_plan.DEFAULT_PLAN_ID
    assert m.clips[4].name == "deep__f.m4a"
    assert "listed=6 skipped=0 to_process=6 shards=2" in capsys.readouterr().out
    assert {p.name for p in (stage / DATE).iterdir()} >= {"audio", "results", "logs"}


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("none", ["e.m4a"]),
        ("failed", ["b.mp4", "d.mp3", "e.m4a"]),
        ("all", ["a.m4a", "b.mp4", "c.wav", "d.mp3", "e.m4a"]),
    ],
)
def test_reprocess_modes(area, mode: str, expected: list[str]) -> None:
    """DB says a ok, b failed; staging (an older plan) says c ok, d failed; deep/f already has
    a line under this very plan, so it is never redone; e is new."""
    src, stage = area
    _results(stage, "old-plan", {"c.wav": "ok", "d.mp3": "failed"})
    _results(stage, "plan-2", {"deep/f.m4a": "failed"})
    request = Request(
        date=DATE,
        plan_id="plan-2",
        reprocess=mode,
        shard_size=2,
        done={f"{DATE}/a.m4a": "ok", f"{DATE}/b.mp4": "failed"},
    )
    m = _plan(src, stage, request)
    assert _ids(m) == expected
    assert (m.listed, m.skipped, m.plan_id) == (6, 6 - len(expected), "plan-2")
    assert all(len(s.clips) <= 2 for s in m.shards)


def test_staging_result_newer_than_db_wins(area) -> None:
    """Failed in the DB, ok in a newer line on staging (not yet loaded): failed-mode skips it."""
    src, stage = area
    _results(stage, "old-plan", {"a.m4a": "failed"})
    _results(stage, "old-plan", {"a.m4a": "ok"})
    request = Request(date=DATE, plan_id="p", reprocess="failed", done={f"{DATE}/a.m4a": "failed"})
    assert "a.m4a" not in _ids(_plan(src, stage, request))


def test_unknown_request_version_is_rejected(area, caplog) -> None:
    src, stage = area
    (stage / DATE).mkdir(parents=True)
    doc = json.loads(Request(date=DATE, plan_id="p").to_json()) | {"schema_version": 99}
    (stage / DATE / "request.json").write_text(json.dumps(doc))
    assert (
        master_plan.main(
            [
                "--date",
                DATE,
                "--staging-root",
                str(stage),
                "--backend",
                "local",
                "--source-root",
                str(src),
            ]
        )
        == 2
    )
    assert "schema_version 99 is not supported" in caplog.text
    assert not (stage / DATE / "manifest.json").exists()


def test_missing_source_day_is_a_clear_error(area, caplog) -> None:
    src, stage = area
    assert (
        master_plan.main(
            [
                "--date",
                "2024-02-30",
                "--staging-root",
                str(stage),
                "--backend",
                "local",
                "--source-root",
                str(src),
            ]
        )
        == 2
    )
    assert "does not exist" in caplog.text
