"""The batched torch engine on CPU with the real tiny.en weights (the faster-whisper dir that
WhisperX reads), run the way a shard runs it (``audio_hpc.process --engine torch``) next
to the WhisperX engine (greedy too) on the same staged day: its transcripts must be as good,
its result lines the same shape, its per-clip failures the same."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import sample_clips
from audio_hpc.contract import Clip, ClipResult, Manifest, Shard, ShardSummary, iter_result_lines
from support import HPC_PYTHON, MODEL, MODELS_DIR
from wer_score import corpus_wer

DATE = "2024-03-01"
# Measured here (sample_clips' 6 speech clips of Harvard sentences, CPU float32, greedy):
# corpus WER torch 0.159, WhisperX 0.159 (same words); WhisperX's default beam 5 gets 0.108.
# The torch engine decodes greedily, so it is held to WhisperX greedy, within the issue's
# 1 point. Harvard sentences ("birch canoe", "hogs") are hard for tiny.en; a broken engine
# (wrong mel, misaligned encoder rows, lost windows) measures above 0.5.
WER_MAX = 0.25
MAX_GAP_TO_WHISPERX = 0.01
BEAM_GAP_TO_WHISPERX = 0.03  # 4 words of this corpus


def _stage(root: Path) -> dict[str, str]:
    """A day staged as the transfer job leaves it, one shard; returns {clip_id: expected}."""
    day = root / DATE
    expected = sample_clips.make_day(root / "src", DATE, clips=6)
    day.mkdir(parents=True)
    (root / "src" / DATE).rename(day / "audio")
    clips = [
        Clip(f"{DATE}/{name}", name, f"/src/{name}", (day / "audio" / name).stat().st_size)
        for name in sorted(expected)
    ]
    (day / "manifest.json").write_text(
        Manifest(date=DATE, plan_id="p1", source="local", shards=[Shard(0, clips)]).to_json()
    )
    subprocess.run(["chmod", "-R", "a+rwX", str(root)], check=True)
    return {f"{DATE}/{name}": text for name, text in expected.items()}


def _run_shard(root: Path, engine: str, *extra: str) -> tuple[dict[str, ClipResult], ShardSummary]:
    staging = root / "-".join([engine, *extra]).replace("--", "")
    staging.mkdir()
    subprocess.run(["cp", "-a", str(root / DATE), str(staging)], check=True)
    proc = subprocess.run(
        [
            HPC_PYTHON,
            "-m",
            "audio_hpc.process",
            "--date",
            DATE,
            "--shard",
            "0",
            "--plan-id",
            "p1",
            "--staging-root",
            str(staging),
            "--models-dir",
            MODELS_DIR,
            "--model",
            MODEL,
            "--engine",
            engine,
            "--device",
            "cpu",
            "--compute-type",
            "float32",
            "--batch-size",
            "8",
            "--workers",
            "2",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = staging / DATE / "results" / "p1"
    lines = {r.clip_id: r for r in iter_result_lines((out / "shard-0000.jsonl").read_text())}
    return lines, ShardSummary.from_json((out / "shard-0000.summary.json").read_text())


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory, engine_runtime: dict[str, str]) -> dict:
    root = tmp_path_factory.mktemp("engines")
    expected = _stage(root)
    return {
        "expected": expected,
        "torch": _run_shard(root, "torch"),
        "whisperx": _run_shard(root, "whisperx", "--beam-size", "1"),
        "torch_beam": _run_shard(root, "torch", "--beam-size", "5", "--batch-size", "40"),
        "whisperx_beam": _run_shard(root, "whisperx"),
    }  # its default: beam 5


def _wer(day: dict, engine: str) -> float:
    lines, _ = day[engine]
    speech = {cid: text for cid, text in day["expected"].items() if not text.startswith("error:")}
    return corpus_wer((text, lines[cid].text) for cid, text in speech.items())


def test_torch_engine_transcribes_as_well_as_whisperx(day: dict) -> None:
    torch_wer, whisperx_wer = _wer(day, "torch"), _wer(day, "whisperx")
    print(f"corpus WER torch {torch_wer:.3f} whisperx {whisperx_wer:.3f}")
    assert torch_wer <= WER_MAX
    assert torch_wer <= whisperx_wer + MAX_GAP_TO_WHISPERX


def test_torch_beam_search_gains_what_whisperx_beam_search_gains(day: dict) -> None:
    """``--beam-size 5`` against WhisperX as the pipeline runs it (beam 5). Measured here:
    torch 0.128 (greedy 0.159), WhisperX 0.108: 2.5 of 126 words, where the two engines' VADs
    cut the clips differently. The 1-point comparison needs more words than CI can decode
    with beams on CPU: bench/RESULTS.md (2,550 words: 8.11 % vs 7.61-7.75 %)."""
    beam_wer, whisperx_wer = _wer(day, "torch_beam"), _wer(day, "whisperx_beam")
    print(f"corpus WER torch beam 5 {beam_wer:.3f} whisperx beam 5 {whisperx_wer:.3f}")
    assert beam_wer <= _wer(day, "torch")
    assert beam_wer <= whisperx_wer + BEAM_GAP_TO_WHISPERX


def test_same_failures_with_the_same_reasons(day: dict) -> None:
    bad = {
        cid: text.removeprefix("error:")
        for cid, text in day["expected"].items()
        if text.startswith("error:")
    }
    for engine in ("torch", "whisperx", "torch_beam"):
        lines, summary = day[engine]
        assert set(lines) == set(day["expected"])
        assert {cid: r.error_kind for cid, r in lines.items() if r.status == "failed"} == bad
        assert all(lines[cid].error for cid in bad)
        assert (summary.ok, summary.failed, summary.engine) == (6, 4, engine.split("_")[0])


def test_result_lines_have_the_same_shape(day: dict) -> None:
    """What record_results stores must not depend on the engine."""
    (t_lines, t_sum), (w_lines, _) = day["torch"], day["whisperx"]
    for cid, t in t_lines.items():
        w = w_lines[cid]
        assert (t.engine, w.engine) == ("torch", "whisperx")
        assert (t.status, t.model, t.date) == (w.status, w.model, w.date)
        assert t.duration_s == pytest.approx(w.duration_s)  # same FFmpeg decode
        if t.status != "ok":
            continue
        assert t.language == w.language == "en"
        assert t.alignment.startswith("skipped: ") and w.alignment.startswith("skipped: ")
        assert set(t.timings) >= {"decode_s", "transcribe_s"}
        assert [set(s) for s in t.segments] == [{"start", "end", "text", "words"}] * len(t.segments)
        starts = [s["start"] for s in t.segments]
        assert starts == sorted(starts) and 0 <= starts[0]
        assert all(s["start"] < s["end"] <= t.duration_s + 0.01 for s in t.segments)
        assert t.text == " ".join(s["text"] for s in t.segments)
    assert t_sum.device == "cpu" and t_sum.audio_s > 0
