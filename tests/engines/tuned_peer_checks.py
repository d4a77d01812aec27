"""Checks of the tuned transformers peer (``bench/tuned_peer.py``), run under the HPC Python
with ``bench`` on PYTHONPATH by test_tuned_peer.py; prints one JSON object.

The peer must cut the windows transformers' ASR pipeline cuts (its own ``chunk_iter``), and
must report the search and the cache that ``generate`` really ran, not the ones it was asked
for."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch
from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration
from transformers.pipelines.automatic_speech_recognition import chunk_iter

from tuned_peer import CHUNK, STRIDE, observed, pipeline_windows

SECONDS = [0.5, 10, 25, 29.99, 30, 30.01, 35, 44.99, 45, 50, 50.01, 60, 61, 90, 200]


def cuts() -> dict:
    """Window lengths (samples) of ours and of the pipeline's ``chunk_iter`` per clip length."""
    fe = WhisperFeatureExtractor(feature_size=80)
    out = {}
    for s in SECONDS:
        audio = np.random.default_rng(0).normal(0, 0.1, int(s * 16_000)).astype(np.float32)
        theirs = [c["stride"][0] for c in chunk_iter(audio, fe, CHUNK, STRIDE, STRIDE)]
        out[str(s)] = {"ours": [len(w) for w in pipeline_windows(audio)], "pipeline": theirs}
    return out


def searches() -> dict:
    """What ``observed`` saw for greedy, beam 2 and a static cache on a tiny random model."""
    config = WhisperConfig(
        vocab_size=51864,
        num_mel_bins=80,
        d_model=64,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        decoder_start_token_id=50257,
        eos_token_id=50256,
        pad_token_id=50256,
    )
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config).eval()
    feats = torch.randn(2, 80, 3000)
    out = {}
    settings: dict[str, dict[str, Any]] = {
        "greedy": {"num_beams": 1},
        "beam2": {"num_beams": 2},
        "static": {"num_beams": 1, "cache_implementation": "static", "disable_compile": True},
    }
    for name, kw in settings.items():
        with observed(model) as seen, torch.inference_mode():
            model.generate(
                input_features=feats, do_sample=False, min_new_tokens=4, max_new_tokens=4, **kw
            )
        out[name] = seen
    return out


if __name__ == "__main__":
    print(json.dumps({"cuts": cuts(), "searches": searches()}))
