"""The torch engine's decoding against transformers' Whisper holding the same real tiny.en
weights (greedy tokens, beam-search scores), and a Hugging Face model dir (written by
transformers) loading and transcribing exactly like the faster-whisper dir it came from."""

from __future__ import annotations

import pytest

from hpc_checks import run_checks


@pytest.fixture(scope="module")
def checks(engine_runtime: dict[str, str]) -> dict:
    return run_checks("decode_checks.py", timeout=840)


def test_greedy_decoding_is_transformers_greedy(checks: dict) -> None:
    assert checks["rows"] >= 4 and checks["greedy_tokens"] > 40
    assert checks["greedy_rows_equal_to_transformers"] == checks["rows"]


def test_beam_search(checks: dict) -> None:
    """A beam of one is greedy; the scores a beam reports are its tokens' (transformers
    recomputes them), so no row decoded on another row's cache; and it finds text at least as
    likely per token as greedy."""
    assert checks["beam1_rows_equal_to_greedy"] == checks["rows"]
    assert checks["beam_score_err"] < 1e-3
    assert checks["beam_mean_logprob_per_token"] >= checks["greedy_mean_logprob_per_token"]
    assert checks["beam_fixed_lengths"] == checks["beam_fixed_wanted"]  # bench_gpu_throughput


def test_one_no_speech_rule_for_greedy_and_beam(checks: dict) -> None:
    """Both searches start from one prompt phase, so a chunk's no-speech probability is the
    same, and the rule reads the same greedy likelihood, so the verdict is the same whichever
    search the site configures: speech kept, hiss rejected (tiny.en hears words in the hum,
    likely enough to keep: both searches must agree on that too)."""
    n = checks["speech_chunks"]
    assert checks["no_speech_prob_beam"] == pytest.approx(checks["no_speech_prob_greedy"], abs=1e-4)
    assert checks["silent_beam"] == checks["silent_greedy"]
    assert checks["silent_greedy"] == [False] * n + [True, False]


def test_hugging_face_dir_is_the_same_model(checks: dict) -> None:
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(checks["hf_files"])
    assert checks["hf_dims_equal"] and checks["hf_suppress_equal"]
    assert checks["hf_max_weight_diff"] == 0.0 and checks["hf_missing_weights"] == []
    assert checks["engine_texts_equal_hf_ct2"]
    assert all(
        text and not text.startswith(("NoSpeech", "Error"))
        for text in checks["engine_texts_ct2"].values()
    )
