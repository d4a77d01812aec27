"""The strongest transformers recipe for a day of clips: batched ``generate``, not the pipeline.

What a user who tunes transformers by hand runs: the clips cut into the windows the ASR
pipeline would cut (30 s chunks with 5 s strides on each side, ``chunk_iter``'s rule), log-mel
on the GPU (``WhisperFeatureExtractor(..., device="cuda")``; the next batch's features are
computed on a helper thread while this batch decodes), then ``model.generate`` on full
batches, greedy (``num_beams=1, do_sample=False``), optionally with a static cache. Stride
merging is left out (it only costs the peer time), the tokens are still decoded to text.

Every row says what it set (batch, cache, compile, tokens per window) and what it observed:
the generation method that ran (``_sample`` / ``_beam_search`` counted on the class), the
cache classes built (``__init__`` counted on transformers' cache classes) and whether
``generate`` compiled the forward (dynamo's graph counter, ``model._compiled_call``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

SAMPLE_RATE = 16_000
CHUNK = 30 * SAMPLE_RATE  # the pipeline's chunk_length_s=30
STRIDE = CHUNK // 6  # its default stride_length_s: chunk_length_s / 6 on each side


def pipeline_windows(audio: np.ndarray) -> list[np.ndarray]:
    """The 30 s chunks transformers' ASR pipeline cuts (``chunk_iter``: step 20 s, a chunk
    kept only if it is longer than the left stride, the last one ends the clip)."""
    step = CHUNK - 2 * STRIDE
    out = []
    for start in range(0, len(audio), step):
        piece = audio[start : start + CHUNK]
        if start == 0 or len(piece) > STRIDE:
            out.append(piece)
        if start + CHUNK >= len(audio):
            break
    return out


def flat_windows(audio: np.ndarray) -> list[np.ndarray]:
    """Back-to-back 30 s windows, no overlap: fewer windows than the pipeline's cut (and words
    split at every boundary)."""
    return [audio[s : s + CHUNK] for s in range(0, len(audio), CHUNK)]


CUTS = {"pipeline": pipeline_windows, "flat": flat_windows}


@dataclass(frozen=True)
class PeerSettings:
    """What a tuned-peer row sets. ``tokens``: exactly this many new tokens per window (random
    weights never stop); None: stop at end-of-text (real weights). ``compile``: let
    ``generate`` compile the forward (transformers does so on its own with a static cache
    on CUDA); False passes ``disable_compile``."""

    batch: int
    cache: str = "dynamic"  # "dynamic" or "static"
    compile: bool = False
    tokens: int | None = 90
    cut: str = "pipeline"


@contextmanager
def observed(model: torch.nn.Module) -> Iterator[dict]:
    """Count what ``generate`` actually ran: search methods on the model's class, cache
    classes built, graphs dynamo compiled."""
    import transformers.cache_utils as cu

    seen: dict = {"methods": {}, "caches": {}}
    patched = []
    targets = [(type(model), m, "methods") for m in ("_sample", "_beam_search")]
    targets += [
        (getattr(cu, c), "__init__", "caches")
        for c in ("StaticCache", "DynamicCache", "EncoderDecoderCache")
        if hasattr(cu, c)
    ]
    for owner, name, kind in targets:
        original, own = getattr(owner, name), name in owner.__dict__
        key = name if kind == "methods" else owner.__name__

        def counted(*a, _fn=original, _key=key, _kind=kind, **k):
            seen[_kind][_key] = seen[_kind].get(_key, 0) + 1
            return _fn(*a, **k)

        setattr(owner, name, counted)
        patched.append((owner, name, original if own else None))
    from torch._dynamo.utils import counters

    graphs0 = counters["stats"]["unique_graphs"]
    try:
        yield seen
    finally:
        for owner, name, original in patched:
            if original is None:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
        seen["dynamo_graphs_compiled"] = counters["stats"]["unique_graphs"] - graphs0
        seen["compiled_call"] = getattr(model, "_compiled_call", None) is not None


class TunedPeer:
    """A transformers Whisper model and its feature extractor on the GPU, for one shape."""

    def __init__(
        self,
        config_kwargs: dict,
        generation_kwargs: dict,
        tokenizer_path: Path,
        device: str,
        dtype: str = "float16",
        state_dict: dict | None = None,
    ) -> None:
        """``config_kwargs``: WhisperConfig fields (the engine's ``Dims``); ``state_dict``:
        real weights (HF names), else random ones."""
        from transformers import (
            GenerationConfig,
            WhisperConfig,
            WhisperFeatureExtractor,
            WhisperForConditionalGeneration,
            WhisperTokenizerFast,
            logging,
        )

        logging.set_verbosity_error()
        torch.manual_seed(0)
        self.device, self.dtype = device, getattr(torch, dtype)
        config = WhisperConfig(
            **config_kwargs,
            decoder_start_token_id=50257,
            eos_token_id=50256,
            pad_token_id=50256,
            bos_token_id=50256,
        )
        with torch.device(device):
            model = WhisperForConditionalGeneration._from_config(
                config, attn_implementation="sdpa", torch_dtype=self.dtype
            )
        if state_dict is not None:
            missing, unexpected = model.load_state_dict(state_dict, strict=False)
            if [m for m in missing if "embed_positions" not in m] or unexpected:
                raise ValueError(f"weights do not fit: missing {missing}, unexpected {unexpected}")
        self.model = model.to(device, self.dtype).eval()
        self.model.generation_config = GenerationConfig(
            decoder_start_token_id=50257,
            eos_token_id=50256,
            pad_token_id=50256,
            no_timestamps_token_id=50362,
            is_multilingual=False,
            num_beams=1,
            do_sample=False,
            **generation_kwargs,
        )
        self.features = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
        self.tokenizer = WhisperTokenizerFast(
            tokenizer_file=str(tokenizer_path), pad_token="<|endoftext|>"
        )
        self.prefetch = ThreadPoolExecutor(1, thread_name_prefix="log-mel")

    def _features(self, windows: list[np.ndarray]) -> torch.Tensor:
        got = self.features(
            windows, sampling_rate=SAMPLE_RATE, return_tensors="pt", device=self.device
        ).input_features
        return got.to(self.device, self.dtype, non_blocking=True)

    def _generate(self, feats: torch.Tensor, s: PeerSettings) -> torch.Tensor:
        kw: dict = {"num_beams": 1, "do_sample": False}
        if s.tokens is not None:
            kw.update(min_new_tokens=s.tokens, max_new_tokens=s.tokens)
        else:  # the engine's cap (``DecodeOptions.max_new_tokens``)
            kw["max_new_tokens"] = 220
        if s.cache == "static":
            kw["cache_implementation"] = "static"
        if not s.compile:
            kw["disable_compile"] = True
        with torch.inference_mode():
            return self.model.generate(input_features=feats, **kw)

    def transcribe(self, clips: list[np.ndarray], s: PeerSettings) -> tuple[list[str], dict]:
        """Texts of every window in clip order, and what ran. Full batches only, except the
        day's last (the shapes a tuned user would warm up: ``warm_up`` first)."""
        windows = [w for a in clips for w in CUTS[s.cut](a)]
        batches = [windows[i : i + s.batch] for i in range(0, len(windows), s.batch)]
        texts: list[str] = []
        new_tokens = 0
        with observed(self.model) as seen:
            nxt = self.prefetch.submit(self._features, batches[0])
            for i in range(len(batches)):
                feats = nxt.result()
                if i + 1 < len(batches):
                    nxt = self.prefetch.submit(self._features, batches[i + 1])
                ids = self._generate(feats, s)
                ids = ids.sequences if hasattr(ids, "sequences") else ids
                # fixed: the tokens forced; else text tokens (ids below end-of-text: no prompt,
                # padding or EOT)
                new_tokens += (
                    len(batches[i]) * s.tokens
                    if s.tokens is not None
                    else int((ids < self.model.generation_config.eos_token_id).sum())
                )
                texts += self.tokenizer.batch_decode(ids, skip_special_tokens=True)
        seen.update(windows=len(windows), tokens_out=new_tokens)
        return texts, seen

    def warm_up(self, clips: list[np.ndarray], s: PeerSettings) -> None:
        """Run the two batch shapes of the day once (a full batch and the day's last), so
        compilation, cuBLAS set-up and allocator growth stay out of the timed pass; a fixed
        decode length is cut to 8 tokens here unless ``generate`` compiles (device time)."""
        windows = [w for a in clips for w in CUTS[s.cut](a)]
        shapes = {min(s.batch, len(windows)), len(windows) % s.batch or s.batch}
        short = s if s.compile or s.tokens is None else replace(s, tokens=min(s.tokens, 8))
        for n in shapes:
            self._generate(self._features(windows[:n]), short)

    def run(self, clips: list[np.ndarray], s: PeerSettings, label: str) -> dict:
        """One timed pass over the day after ``warm_up``: audio-s/s, tokens per audio second,
        and what was set and observed."""
        t0 = time.perf_counter()
        self.warm_up(clips, s)
        warm = time.perf_counter() - t0
        torch.cuda.synchronize() if self.device == "cuda" else None
        t0 = time.perf_counter()
        texts, seen = self.transcribe(clips, s)
        torch.cuda.synchronize() if self.device == "cuda" else None
        wall = time.perf_counter() - t0
        audio_s = sum(len(a) for a in clips) / SAMPLE_RATE
        return {
            "recipe": label,
            "mode": "greedy",
            "batch": s.batch,
            "set": asdict(s),
            "observed": seen,
            "ran_as_asked": set(seen["methods"]) == {"_sample"},
            "audio_s": round(audio_s, 1),
            "wall_s": round(wall, 2),
            "audio_s_per_s": round(audio_s / wall, 1),
            "windows_per_s": round(seen["windows"] / wall, 1),
            "tokens_per_audio_s": round(seen["tokens_out"] / audio_s, 2),
            "warm_up_s": round(warm, 1),
            "texts": len(texts),
            "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1)
            if torch.cuda.is_available()
            else 0,
        }
