"""What batched decoding and beam search share, below both modules: the options, the
per-row outcomes, and ``RowDecoder``, the part of ``torch_decode.BatchDecoder`` that
``torch_beam`` drives (so beam search needs no import of the decoder it is called from)."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Protocol

import torch

from audio_hpc.engines.torch_checkpoint import Vocab
from audio_hpc.engines.torch_model import DecodeState, WhisperTorch
from audio_hpc.engines.torch_pack import Layout


@dataclass(frozen=True)
class DecodeOptions:
    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    compression_ratio_threshold: float = 2.4
    logprob_threshold: float = -1.0
    no_speech_threshold: float = 0.6
    max_new_tokens: int = 220
    encoder_batch: int = 32
    cross_fp8: bool = False  # cross-attention K/V stored as float8 (half the bytes)
    compile_encoder: bool = False  # torch.compile the encoder layers (CUDA: +28 % windows/s)
    beam_size: int = 1  # > 1: beam search at temperature 0 (rows per chunk)


@dataclass
class Encoded:
    """Encoder outputs of one batch, possibly still being computed on the encoder stream."""

    outputs: list[torch.Tensor]
    ready: torch.cuda.Event | None


@dataclass
class Prompted:
    """What the prompt phase decided per chunk, and the logits of the first text token's step
    (one row per beam)."""

    no_speech: torch.Tensor  # (chunks,) probability of <|nospeech|> at the first position
    language: torch.Tensor  # (chunks,) language token ids; -1 for an English-only model
    logits: torch.Tensor  # (rows, vocab)


@dataclass
class Decoded:
    text: str
    tokens: list[int]
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    language: str
    temperature: float
    greedy_logprob: float | None = None  # beam search: the greedy decode's avg_logprob

    def silent(self, o: DecodeOptions) -> bool:
        """Whisper's no-speech rule: a likely <|nospeech|> at the first position and an
        unlikely temperature-0 text. Under beam search the text's likelihood read is the greedy
        decode's (always computed too), so greedy and beam judge a chunk alike."""
        logprob = self.avg_logprob if self.greedy_logprob is None else self.greedy_logprob
        return self.no_speech_prob > o.no_speech_threshold and logprob < o.logprob_threshold

    def needs_fallback(self, o: DecodeOptions) -> bool:
        return not self.silent(o) and (
            self.compression_ratio > o.compression_ratio_threshold
            or self.avg_logprob < o.logprob_threshold
        )


def compression_ratio(text: str) -> float:
    raw = text.encode("utf-8")
    return len(raw) / len(zlib.compress(raw)) if raw else 0.0


class RowDecoder(Protocol):
    """The batch decoder as beam search sees it (``torch_decode.BatchDecoder``)."""

    options: DecodeOptions
    device: torch.device
    prompt: list[int]
    max_new: int
    max_chunks: int
    state: DecodeState
    model: WhisperTorch
    vocab: Vocab
    bias: torch.Tensor
    begin_bias: torch.Tensor

    def prompt_phase(self, layout: Layout, encoded: Encoded | None, per_chunk: int) -> Prompted: ...

    def logits(self, n: int) -> torch.Tensor: ...

    def fixed_lengths(self, fixed_tokens: list[int]) -> torch.Tensor: ...

    def decoded(
        self, tokens: list[int], sum_lp: float, no_speech: float, language: int, temperature: float
    ) -> Decoded: ...
