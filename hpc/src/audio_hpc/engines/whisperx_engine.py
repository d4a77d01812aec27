"""WhisperX (faster-whisper + pyannote VAD) behind the engine interface, fully offline.

The model is loaded once per shard from ``<models_dir>/<model_name>``; the pyannote VAD
weights ship inside the whisperx wheel, so no hub access is needed. Word alignment needs a
wav2vec2 model per language, which the hub would normally provide: it is used only when one
exists locally at ``<models_dir>/align-<lang>``, otherwise the result says why it was skipped.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

os.environ["HF_HUB_OFFLINE"] = "1"  # before whisperx/transformers read it
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import torch  # noqa: E402
import whisperx  # noqa: E402

from audio_hpc.engines.base import (
    DecodedClip,
    EngineOptions,
    NoSpeech,
    Transcript,  # noqa: E402
    TranscriptionEngine,
)


def _cpu_threads() -> int:
    """Threads SLURM granted us (the affinity mask), not the node's core count."""
    return len(os.sched_getaffinity(0))


class WhisperXEngine(TranscriptionEngine):
    name = "whisperx"

    def __init__(self, options: EngineOptions) -> None:
        super().__init__(options)
        model_path = Path(options.models_dir) / options.model_name
        if not (model_path / "model.bin").is_file():
            raise FileNotFoundError(f"no CTranslate2 model at {model_path} (model.bin missing)")
        if options.device == "auto":
            self.device = "cuda" if torch.cuda.is_available() else "cpu"
        else:
            self.device = options.device
        self.model = whisperx.load_model(
            str(model_path),
            self.device,
            compute_type=options.compute_type,
            language=options.language or None,
            vad_method="pyannote",
            asr_options={"beam_size": options.beam_size or 5},
            local_files_only=True,
            threads=_cpu_threads(),
        )
        self._aligners: dict[str, tuple[Any, dict] | str] = {}

    @property
    def device_name(self) -> str:
        return torch.cuda.get_device_name(0) if self.device == "cuda" else "cpu"

    def _aligner(self, language: str) -> tuple[Any, dict] | str:
        """(model, metadata) for ``language``, or the reason alignment is skipped."""
        if language not in self._aligners:
            path = Path(self.options.models_dir) / f"align-{language}"
            if not path.is_dir():
                self._aligners[language] = f"skipped: no local alignment model ({path})"
            else:
                try:
                    self._aligners[language] = whisperx.load_align_model(
                        language, self.device, model_name=str(path), model_cache_only=True
                    )
                except Exception as exc:  # a broken aligner must not fail every clip
                    self._aligners[language] = f"skipped: cannot load {path}: {exc}"
        return self._aligners[language]

    def _transcribe(self, clip: DecodedClip) -> Transcript:
        t0 = time.perf_counter()
        result = self.model.transcribe(
            clip.audio, batch_size=self.options.batch_size, language=self.options.language or None
        )
        segments = [s for s in result["segments"] if s["text"].strip()]
        if not segments:
            raise NoSpeech("the VAD found no speech")
        timings = {"transcribe_s": time.perf_counter() - t0}
        language = result["language"]
        aligner = self._aligner(language)
        if isinstance(aligner, str):
            alignment = aligner
            out = [
                {"start": s["start"], "end": s["end"], "text": s["text"].strip(), "words": []}
                for s in segments
            ]
        else:
            t1 = time.perf_counter()
            aligned = whisperx.align(segments, aligner[0], aligner[1], clip.audio, self.device)
            timings["align_s"] = time.perf_counter() - t1
            alignment = "aligned"
            out = [
                {
                    "start": s["start"],
                    "end": s["end"],
                    "text": s["text"].strip(),
                    "words": s.get("words", []),
                }
                for s in aligned["segments"]
            ]
        return Transcript(
            text=" ".join(s["text"] for s in out),
            language=language,
            segments=out,
            alignment=alignment,
            timings=timings,
        )

    def transcribe_stream(
        self, clips: Iterable[DecodedClip]
    ) -> Iterator[tuple[DecodedClip, Transcript | Exception]]:
        """One clip at a time: WhisperX batches VAD chunks within a clip, not across clips."""
        for clip in clips:
            try:
                yield clip, self._transcribe(clip)
            except Exception as exc:  # per-clip failure, reported not raised (interface contract)
                yield clip, exc
