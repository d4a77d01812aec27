"""The torch engine: Whisper batched *across* clips, for GPUs without CTranslate2 support.

Select it with ``--engine torch`` (config key ``engine: torch``); ``models_dir``/``model_name``
may name a faster-whisper (CTranslate2) dir, the same one WhisperX reads, or a Hugging Face
Whisper dir. ``batch_size`` is the number of decoder rows of a batch, one per chunk (<= 30 s)
when greedy (256 on an H100 with float8 cross-attention K/V and a compiled encoder, the CUDA
defaults; 8-16 on CPU). ``compute_type``: ``float32`` or ``float16`` force that precision on
GPU, anything else means bfloat16 there; the CPU always runs float32. Decoding is greedy
(``beam_size`` 1, the default: the measured GPU throughput) or beam search (``beam_size`` > 1:
that many rows per chunk, so ``batch_size / beam_size`` chunks per batch), with Whisper's
temperature fallback.
On CUDA the first batch of a process pays the encoder's compilation (~16 s on an H100; cached
on disk after).

A background thread pulls clips from the caller's iterator (so FFmpeg decoding of the next
clips runs while the GPU works) and cuts them at silences; the main loop fills each batch with
chunks from many clips, longest first within a look-ahead, one 30 s window each (or several
per window with ``Packing(enabled=True)``: faster, but it cost tiny.en ~2 WER points, so it is
off), and yields a clip's transcript as soon as its last chunk is decoded. An encoder thread
packs the next batch and queues its encoder while this one decodes.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from audio_hpc.engines.base import (
    SAMPLE_RATE,
    DecodedClip,
    EngineOptions,
    NoSpeech,
    Transcript,
    TranscriptionEngine,
)
from audio_hpc.engines.torch_checkpoint import Vocab, load_checkpoint
from audio_hpc.engines.torch_decode import BatchDecoder, Decoded, DecodeOptions, Encoded
from audio_hpc.engines.torch_model import WhisperTorch
from audio_hpc.engines.torch_pack import Layout, Packing, pack
from audio_hpc.engines.torch_vad import VadConfig, chunk

ALIGNMENT = "skipped: the torch engine does not align words"
_END = object()


@dataclass
class _Clip:
    clip: DecodedClip
    chunks: list[tuple[int, int]]
    decoded: dict[int, Decoded] = field(default_factory=dict)
    transcribe_s: float = 0.0


class _SourceFailed(Exception):
    """The caller's clip iterator itself raised: re-raised in the consuming thread."""


def _dtype(options: EngineOptions, device: torch.device) -> torch.dtype:
    if device.type == "cpu" or options.compute_type == "float32":
        return torch.float32
    return torch.float16 if options.compute_type == "float16" else torch.bfloat16


class TorchWhisperEngine(TranscriptionEngine):
    name = "torch"

    def __init__(
        self,
        options: EngineOptions,
        model: WhisperTorch | None = None,
        vocab: Vocab | None = None,
        decode_options: DecodeOptions | None = None,
        vad: VadConfig = VadConfig(),
        packing: Packing = Packing(),
        lookahead: int = 4,
        bench_tokens_per_s: float | None = None,
        overlap: bool = True,
        idle_start: int | None = None,
    ) -> None:
        """``model``/``vocab`` bypass loading (benchmarks with random weights);
        ``decode_options`` default, on CUDA, to float8 cross-attention K/V (half the bytes of
        every decoder step) and a compiled encoder, and to neither elsewhere; ``packing``:
        how chunks share windows; ``bench_tokens_per_s`` fixes each chunk's decode length to
        that rate of its audio; ``overlap`` queues the encoder of the next batch before this
        one decodes; ``idle_start``: chunks enough to start a batch while the GPU has none
        queued (default a quarter of a batch), so a shard's first batch does not wait for a
        full batch of clips to be decoded."""
        super().__init__(options)
        want = options.device
        self.device = torch.device(
            "cuda"
            if want == "auto" and torch.cuda.is_available()
            else "cpu"
            if want == "auto"
            else want
        )
        if model is None or vocab is None:
            dims, state_dict, vocab = load_checkpoint(Path(options.models_dir) / options.model_name)
            model = WhisperTorch(dims)
            model.load_hf_state_dict(state_dict)
        model = model.to(self.device, _dtype(options, self.device)).eval()
        self.vad, self.packing, self.lookahead = vad, packing, lookahead
        self.bench_tokens_per_s = bench_tokens_per_s
        self.overlap = overlap
        cuda = self.device.type == "cuda"
        decode_options = replace(
            decode_options or DecodeOptions(cross_fp8=cuda, compile_encoder=cuda),
            beam_size=options.beam_size or 1,
        )
        self.decoder = BatchDecoder(
            model, vocab, options.batch_size, options.language, decode_options
        )
        self.idle_start = idle_start or max(1, self.decoder.max_chunks // 4)
        self.windows, self.window_audio_s = 0, 0.0  # how full the 30 s windows were
        # one encoder thread for the engine's life: a new thread pays cuBLAS/cuDNN handle setup
        self.encoder_thread = ThreadPoolExecutor(1, thread_name_prefix="encode")

    @property
    def device_name(self) -> str:
        return torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"

    def _produce(self, clips: Iterable[DecodedClip], out: queue.Queue) -> None:
        """Decode (via the caller's iterator) and chunk clips ahead of the GPU."""
        try:
            for clip in clips:
                try:
                    out.put((clip, chunk(clip.audio, self.vad)))
                except Exception as exc:  # a clip the VAD cannot read fails alone
                    out.put((clip, exc))
        except BaseException as exc:
            out.put(_SourceFailed(exc))
        finally:
            out.put(_END)

    def _finish(self, c: _Clip) -> Transcript | Exception:
        o = self.decoder.options
        segments: list[dict[str, Any]] = [
            {
                "start": round(s / SAMPLE_RATE, 3),
                "end": round(e / SAMPLE_RATE, 3),
                "text": d.text,
                "words": [],
            }
            for i, (s, e) in enumerate(c.chunks)
            if not (d := c.decoded[i]).silent(o) and d.text
        ]
        if not segments:
            silent = sum(d.silent(o) for d in c.decoded.values())
            return NoSpeech(
                f"no speech: of {len(c.chunks)} chunks the no-speech rule rejected "
                f"{silent}, the rest decoded to no text"
            )
        return Transcript(
            text=" ".join(s["text"] for s in segments),
            language=c.decoded[0].language,
            segments=segments,
            alignment=ALIGNMENT,
            timings={"transcribe_s": round(c.transcribe_s, 3)},
        )

    def _layout(self, batch: list[tuple[_Clip, int]]) -> Layout:
        return pack([c.clip.audio[c.chunks[i][0] : c.chunks[i][1]] for c, i in batch], self.packing)

    def _run_batch(
        self, batch: list[tuple[_Clip, int]], layout: Layout, encoded: Encoded | None
    ) -> None:
        lengths = [(c.chunks[i][1] - c.chunks[i][0]) / SAMPLE_RATE for c, i in batch]
        fixed = (
            None
            if self.bench_tokens_per_s is None
            else [round(self.bench_tokens_per_s * s) for s in lengths]
        )
        t0 = time.perf_counter()
        results = self.decoder.transcribe(layout, fixed, encoded)
        share = (time.perf_counter() - t0) / len(batch)
        self.windows += len(layout.windows)
        self.window_audio_s += sum(lengths)
        for (c, i), d in zip(batch, results):
            c.decoded[i] = d
            c.transcribe_s += share

    def transcribe_stream(
        self, clips: Iterable[DecodedClip]
    ) -> Iterator[tuple[DecodedClip, Transcript | Exception]]:
        """Batches windows across clips; yields each clip once all its windows are done.

        Batch k+1 is formed, and packed and its encoder queued by the encoder thread, while
        batch k is decoded, so the GPU is never idle between batches. With nothing queued
        (the shard's start, or decoding slower than the GPU) a batch starts once
        ``idle_start`` chunks are ready rather than waiting for a full one: at the start of
        a shard a full batch (256 chunks) is ~100 clips to decode first."""
        size = self.decoder.max_chunks
        inbox: queue.Queue = queue.Queue(maxsize=self.lookahead * size)
        threading.Thread(target=self._produce, args=(clips, inbox), daemon=True).start()
        ready: list[tuple[_Clip, int]] = []
        failed: set[int] = set()
        pending: tuple[list[tuple[_Clip, int]], Future] | None = None
        ended = False
        while not ended or ready or pending:
            while not ended and len(ready) < self.lookahead * size:
                wait = (
                    len(ready) < self.idle_start
                    if pending is None
                    else len(ready) < size and self._encoding(pending)
                )
                try:  # wait for clips while the GPU has nothing queued or is still encoding
                    item = inbox.get(block=wait, timeout=None if pending is None else 0.01)
                except queue.Empty:
                    if wait:  # polled: is the pending batch still encoding?
                        continue
                    break
                if item is _END:
                    ended = True
                elif isinstance(item, _SourceFailed):
                    raise item.args[0]
                elif isinstance(item[1], Exception):
                    yield item
                elif not item[1]:
                    yield item[0], NoSpeech("the VAD found no speech")
                else:
                    c = _Clip(item[0], item[1])
                    ready.extend((c, i) for i in range(len(c.chunks)))
            following = None
            if ready and (ended or len(ready) >= size or pending is None):
                ready.sort(
                    key=lambda ci: ci[0].chunks[ci[1]][1] - ci[0].chunks[ci[1]][0], reverse=True
                )
                batch, ready = ready[:size], ready[size:]
                following = (batch, self.encoder_thread.submit(self._prepare, batch))
            if pending is not None:
                yield from self._complete(*pending, failed)
                if failed:  # chunks of clips already failed are not worth decoding
                    ready = [(c, i) for c, i in ready if id(c) not in failed]
            pending = following

    @staticmethod
    def _encoding(pending: tuple[list, Future] | None) -> bool:
        """Is the pending batch still being packed or encoded? Then waiting for more clips
        (to queue the next batch before this one decodes) costs the GPU nothing."""
        if pending is None:
            return False
        prepared = pending[1]
        if not prepared.done():
            return True
        if prepared.exception() is not None:
            return False
        encoded = prepared.result()[1]
        return encoded is not None and encoded.ready is not None and not encoded.ready.query()

    def _prepare(self, batch: list[tuple[_Clip, int]]) -> tuple[Layout, Encoded | None]:
        """Pack a batch into windows and queue their encoder (on the encoder thread, so the
        host work of batch k+1 overlaps the decoding of batch k)."""
        layout = self._layout(batch)
        return layout, self.decoder.encode(layout.windows) if self.overlap else None

    def _complete(
        self, batch: list[tuple[_Clip, int]], prepared: Future, failed: set[int]
    ) -> Iterator[tuple[DecodedClip, Transcript | Exception]]:
        """Decode one batch whole (its rows are the encoded ones); yield the clips it completes,
        or fails (out of memory, say, fails this batch's clips, not the shard). A clip that
        already failed in an earlier batch is never yielded again."""
        clips = [c for c in {id(c): c for c, _ in batch}.values() if id(c) not in failed]
        try:
            self._run_batch(batch, *prepared.result())
        except Exception as exc:
            for c in clips:
                failed.add(id(c))
                yield c.clip, exc
            return
        for c in clips:
            if len(c.decoded) == len(c.chunks):
                yield c.clip, self._finish(c)
