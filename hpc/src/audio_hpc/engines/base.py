"""What every transcription engine offers ``audio_hpc.process``.

An engine takes a *stream* of decoded clips and yields one outcome per clip as soon as it is
done, in any order: that lets an engine batch across clips (the torch engine) or go one file
at a time (WhisperX) behind the same interface, and lets the caller append each result line
the moment it exists (so a killed shard resumes where it stopped).
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SAMPLE_RATE = 16_000


@dataclass
class DecodedClip:
    """A clip decoded by FFmpeg to 16 kHz mono float32."""

    clip_id: str
    audio: np.ndarray
    decode_s: float = 0.0

    @property
    def duration_s(self) -> float:
        return len(self.audio) / SAMPLE_RATE


@dataclass
class Transcript:
    text: str
    language: str
    segments: list[dict[str, Any]]  # {start, end, text, words: [{word, start, end, score}]}
    alignment: str = "skipped: no alignment model"  # or "aligned"
    timings: dict[str, float] = field(default_factory=dict)  # transcribe_s, align_s


class NoSpeech(Exception):
    """The engine's VAD / no-speech guard found nothing to transcribe (error_kind ``silent``)."""


@dataclass(frozen=True)
class EngineOptions:
    models_dir: str
    model_name: str
    language: str = "en"  # "" = detect per clip
    compute_type: str = "int8"
    batch_size: int = 16
    device: str = "auto"  # auto | cpu | cuda
    beam_size: int | None = None  # 1 = greedy; None = the engine's default (WhisperX 5, torch 1)


class TranscriptionEngine(ABC):
    name: str = ""

    def __init__(self, options: EngineOptions) -> None:
        self.options = options

    @property
    @abstractmethod
    def device_name(self) -> str:
        """GPU name, or "cpu": recorded in the shard summary."""

    @abstractmethod
    def transcribe_stream(
        self, clips: Iterable[DecodedClip]
    ) -> Iterator[tuple[DecodedClip, Transcript | Exception]]:
        """One (clip, outcome) per input clip; an outcome that is an exception is a per-clip
        failure (``NoSpeech`` for silence), never raised."""


ENGINES = {
    "whisperx": "audio_hpc.engines.whisperx_engine:WhisperXEngine",
    "torch": "audio_hpc.engines.torch_engine:TorchWhisperEngine",
}


def load_engine(name: str, options: EngineOptions) -> TranscriptionEngine:
    """Instantiate the engine named in config (``whisperx`` | ``torch``)."""
    try:
        module, cls = ENGINES[name].split(":")
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; choose one of {sorted(ENGINES)}") from None
    return getattr(importlib.import_module(module), cls)(options)
