"""Checks of the torch engine's decoding and checkpoint loading with the real tiny.en weights,
run under the HPC Python by test_torch_decoding.py; prints one JSON object.

The independent reference is transformers' own ``WhisperForConditionalGeneration`` holding the
same weights: its greedy tokens, and its teacher-forced log-probability of the tokens the
engine's beam search returned (a beam whose rows took the wrong parent's cache would report a
score its tokens do not have). The same weights saved by transformers as a Hugging Face dir
must load into the same model and transcribe identically.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

import sample_clips
from audio_hpc.decode import decode
from audio_hpc.engines.base import EngineOptions
from audio_hpc.engines.torch_checkpoint import Dims, load_checkpoint
from audio_hpc.engines.torch_decode import BatchDecoder, Decoded, DecodeOptions
from audio_hpc.engines.torch_engine import TorchWhisperEngine
from audio_hpc.engines.torch_model import WhisperTorch
from audio_hpc.engines.torch_pack import Layout, Packing, pack
from audio_hpc.engines.torch_vad import chunk

MODELS_DIR = Path("/opt/hpc-models")
CT2_MODEL = "faster-whisper-tiny.en"
BEAM = 5


def speech(tmp: Path) -> tuple[list, list[np.ndarray]]:
    """Four synthesized clips, decoded by FFmpeg, and their chunks as the VAD cuts them."""
    expected = sample_clips.make_day(tmp, "day", clips=4, bad=False, sentences_per_clip=2)
    clips = [decode(tmp / "day" / name, name, 600) for name in sorted(expected)]
    return clips, [c.audio[s:e] for c in clips for s, e in chunk(c.audio)]


def no_speech_verdicts(model: WhisperTorch, vocab, pieces: list[np.ndarray]) -> dict:
    """The same chunks (speech, then faint hiss and a hum) judged by greedy and by beam
    search, as the engine does (``transcribe``): no-speech probability and verdict each."""
    rng = np.random.default_rng(1)
    t = np.arange(8 * 16_000) / 16_000
    quiet = [
        rng.normal(0, 0.003, t.size).astype(np.float32),
        (0.02 * np.sin(2 * np.pi * 60 * t)).astype(np.float32),
    ]
    layout = pack(pieces + quiet, Packing())
    rows = len(layout.spans) * BEAM
    out: dict[str, Any] = {"speech_chunks": len(pieces)}
    for name, beam in (("greedy", 1), ("beam", BEAM)):
        options = DecodeOptions(beam_size=beam)
        decoded = BatchDecoder(model, vocab, rows, "en", options).transcribe(layout)
        out[f"no_speech_prob_{name}"] = [d.no_speech_prob for d in decoded]
        out[f"silent_{name}"] = [d.silent(options) for d in decoded]
    return out


def save_hf(dims: Dims, state_dict: dict, out: Path) -> WhisperForConditionalGeneration:
    """The CT2 weights as transformers' model, saved as a Hugging Face dir (safetensors)."""
    config = WhisperConfig(
        **{k: getattr(dims, k) for k in Dims.__dataclass_fields__},
        decoder_start_token_id=50257,
        pad_token_id=50256,
    )
    hf = WhisperForConditionalGeneration(config).eval()
    hf.load_state_dict(state_dict, strict=True)  # the conversion's names are transformers'
    ct2_config = json.loads((MODELS_DIR / CT2_MODEL / "config.json").read_text())
    hf.generation_config.suppress_tokens = ct2_config["suppress_ids"]
    hf.generation_config.begin_suppress_tokens = ct2_config["suppress_ids_begin"]
    hf.save_pretrained(out, safe_serialization=True)
    shutil.copy(MODELS_DIR / CT2_MODEL / "tokenizer.json", out / "tokenizer.json")
    return hf


class Reference:
    """transformers' Whisper, with the engine's prompt and token suppression."""

    def __init__(
        self, hf: WhisperForConditionalGeneration, decoder: BatchDecoder, layout: Layout
    ) -> None:
        self.hf, self.decoder, self.layout = hf, decoder, layout
        extract = WhisperFeatureExtractor(feature_size=hf.config.num_mel_bins)
        with torch.inference_mode():
            self.encoded = [
                hf.model.encoder(
                    extract(w, sampling_rate=16_000, return_tensors="pt").input_features
                )
                for w in layout.windows
            ]

    def _logprobs(self, row: int, tokens: list[int]) -> torch.Tensor:
        """Log-probabilities after each of ``tokens`` (prompt + text), suppression applied."""
        ids = torch.tensor([self.decoder.prompt + tokens])
        encoded = self.encoded[self.layout.spans[row].window]
        logits = self.hf(encoder_outputs=encoded, decoder_input_ids=ids).logits[0].float()
        logits = logits[len(self.decoder.prompt) - 1 :]
        bias = torch.stack([self.decoder.begin_bias] + [self.decoder.bias] * (len(logits) - 1))
        return F.log_softmax(logits + bias, dim=-1)

    @torch.inference_mode()
    def greedy(self, row: int, limit: int = 200) -> list[int]:
        tokens: list[int] = []
        while len(tokens) < limit:
            nxt = int(self._logprobs(row, tokens)[-1].argmax())
            if nxt == self.decoder.vocab.eot:
                break
            tokens.append(nxt)
        return tokens

    @torch.inference_mode()
    def score(self, row: int, tokens: list[int]) -> float:
        """Summed log-probability of ``tokens`` then end-of-text."""
        lp = self._logprobs(row, tokens)
        return float(lp.gather(1, torch.tensor(tokens + [self.decoder.vocab.eot])[:, None]).sum())


def summed(d: Decoded) -> float:
    return d.avg_logprob * (len(d.tokens) + 1)


def main() -> None:
    torch.manual_seed(0)
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        clips, pieces = speech(tmp)
        layout = pack(pieces, Packing())
        dims, sd, vocab = load_checkpoint(MODELS_DIR / CT2_MODEL)
        model = WhisperTorch(dims)
        model.load_hf_state_dict(sd)
        model.eval()
        out.update(no_speech_verdicts(model, vocab, pieces))
        rows = len(layout.spans)
        greedy = BatchDecoder(model, vocab, rows * BEAM, "en").decode(layout)
        beam1 = BatchDecoder(model, vocab, rows, "en", DecodeOptions(beam_size=1)).decode_beam(
            layout
        )
        beam = BatchDecoder(model, vocab, rows * BEAM, "en", DecodeOptions(beam_size=BEAM))
        beamed = beam.decode_beam(layout)
        hf_dir = tmp / "models" / "whisper-tiny.en-hf"
        ref = Reference(save_hf(dims, sd, hf_dir), beam, layout)
        out["rows"] = rows
        out["greedy_tokens"] = sum(len(d.tokens) for d in greedy)
        out["greedy_rows_equal_to_transformers"] = sum(
            d.tokens == ref.greedy(i) for i, d in enumerate(greedy)
        )
        out["beam1_rows_equal_to_greedy"] = sum(a.tokens == b.tokens for a, b in zip(beam1, greedy))
        out["beam_score_err"] = max(
            abs(summed(d) - ref.score(i, d.tokens)) for i, d in enumerate(beamed)
        )
        out["beam_rows_differing_from_greedy"] = sum(
            a.tokens != b.tokens for a, b in zip(beamed, greedy)
        )
        fixed = [3 + 2 * i for i in range(rows)]  # the benchmarks' fixed decode lengths
        out["beam_fixed_lengths"] = [
            len(d.tokens) for d in beam.decode_beam(layout, fixed_tokens=fixed)
        ]
        out["beam_fixed_wanted"] = fixed

        def per_token(i: int, d: Decoded) -> float:
            return ref.score(i, d.tokens) / max(1, len(d.tokens))

        out["beam_mean_logprob_per_token"] = (
            sum(per_token(i, d) for i, d in enumerate(beamed)) / rows
        )
        out["greedy_mean_logprob_per_token"] = (
            sum(per_token(i, d) for i, d in enumerate(greedy)) / rows
        )

        hf_dims, hf_sd, hf_vocab = load_checkpoint(hf_dir)
        out["hf_files"] = sorted(p.name for p in hf_dir.iterdir())
        out["hf_dims_equal"] = hf_dims == dims
        out["hf_max_weight_diff"] = max(
            float((hf_sd[k] - v).abs().max()) for k, v in sd.items() if k in hf_sd
        )
        out["hf_missing_weights"] = sorted(set(sd) - set(hf_sd) - {"proj_out.weight"})
        out["hf_suppress_equal"] = (hf_vocab.suppress, hf_vocab.suppress_begin) == (
            vocab.suppress,
            vocab.suppress_begin,
        )
        texts = {}
        for name in (CT2_MODEL, hf_dir.name):
            root = MODELS_DIR if name == CT2_MODEL else hf_dir.parent
            engine = TorchWhisperEngine(
                EngineOptions(str(root), name, device="cpu", compute_type="float32", batch_size=8)
            )
            texts[name] = {
                c.clip_id: getattr(t, "text", repr(t)) for c, t in engine.transcribe_stream(clips)
            }
        out["engine_texts_ct2"] = texts[CT2_MODEL]
        out["engine_texts_equal_hf_ct2"] = texts[CT2_MODEL] == texts[hf_dir.name]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
