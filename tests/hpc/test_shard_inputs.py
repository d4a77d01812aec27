"""The shard runner without transcribing: it refuses what it cannot run, clearly (unknown
manifest version, a shard not in the plan, another plan's manifest, a missing model), and
repairs a ledger torn by a kill. Runs in the HPC runtime (numpy; WhisperX for the model
check)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from audio_hpc.contract import Clip, ClipResult, Manifest, Shard, ShardSummary
from support import HPC_PYTHON, MODELS_DIR

DATE = "2024-01-15"


def _run(stage: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            HPC_PYTHON,
            "-m",
            "audio_hpc.process",
            "--date",
            DATE,
            "--staging-root",
            str(stage),
            "--models-dir",
            MODELS_DIR,
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture
def stage(tmp_path: Path) -> Path:
    day = tmp_path / DATE
    (day / "audio").mkdir(parents=True)
    (day / "audio" / "a.wav").write_bytes(b"not really audio")
    m = Manifest(
        date=DATE,
        plan_id="p1",
        source="local",
        shards=[Shard(0, [Clip(f"{DATE}/a.wav", "a.wav", "/src/a.wav", 1)])],
    )
    (day / "manifest.json").write_text(m.to_json())
    return tmp_path


@pytest.mark.parametrize(
    "args, message",
    [
        (("--shard", "5"), "shard 5 is not in"),
        (("--shard", "0", "--plan-id", "p2"), "belongs to plan 'p1', not 'p2'"),
    ],
)
def test_bad_shard_or_plan(stage: Path, args: tuple[str, ...], message: str) -> None:
    proc = _run(stage, *args)
    assert proc.returncode == 2 and message in proc.stderr


def test_unknown_manifest_version(stage: Path) -> None:
    path = stage / DATE / "manifest.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | {"schema_version": 2}))
    proc = _run(stage, "--shard", "0")
    assert proc.returncode == 2
    assert "manifest.json: schema_version 2 is not supported" in proc.stderr


def test_missing_model_fails_the_shard(stage: Path, engine_runtime: dict[str, str]) -> None:
    """Engine tier: the runtime imports torch and WhisperX before it looks for the model."""
    proc = _run(stage, "--shard", "0", "--model", "no-such-model")
    assert proc.returncode == 3
    assert "no CTranslate2 model at" in proc.stderr and "no-such-model" in proc.stderr


def test_torn_line_is_dropped_and_the_shard_resumes(stage: Path) -> None:
    """A kill mid-write leaves half a line: it is cut off, the clip already done is skipped,
    and a clip that never reached staging is recorded as transfer_failed without the engine
    ever loading."""
    day = stage / DATE
    m = Manifest.from_json((day / "manifest.json").read_text())
    m.shards[0].clips.append(Clip(f"{DATE}/lost.m4a", "lost.m4a", "/src/lost.m4a", 1))
    (day / "manifest.json").write_text(m.to_json())
    ledger = day / "results" / "p1" / "shard-0000.jsonl"
    ledger.parent.mkdir(parents=True)
    done = ClipResult(clip_id=f"{DATE}/a.wav", date=DATE, status="ok", text="hi").to_line()
    ledger.write_text(done + done[:40])
    proc = _run(stage, "--shard", "0", "--model", "not-needed")
    assert proc.returncode == 0, proc.stderr
    assert "dropping a torn last line" in proc.stderr
    lines = ledger.read_text().splitlines()
    assert len(lines) == 2 and lines[0] == done.strip()
    lost = ClipResult.from_line(lines[1])
    assert (lost.clip_id, lost.error_kind) == (f"{DATE}/lost.m4a", "transfer_failed")
    summary = ShardSummary.from_json((ledger.parent / "shard-0000.summary.json").read_text())
    assert (summary.ok, summary.failed, summary.skipped_already_done) == (1, 1, 1)
