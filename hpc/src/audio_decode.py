"""FFmpeg → 16 kHz mono float32, with a per-clip failure reason, in a prefetching pool.

Decoding runs in FFmpeg subprocesses, so a thread pool gives real parallelism; the pool keeps
a bounded number of clips decoded ahead so the engine never waits on I/O or FFmpeg while
memory stays bounded.
"""
from __future__ import annotations

import subprocess
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from engines.base import SAMPLE_RATE, DecodedClip

# Phrases FFmpeg prints when the input is not a media file it recognises, or has no audio.
_NOT_AUDIO = ("detected only with low score", "does not contain any stream",
              "matches no streams")
_STDERR_TAIL_LINES = 4


class DecodeError(Exception):
    """A clip that cannot be turned into audio; ``kind`` is one of the contract's ERROR_KINDS."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _stderr_tail(stderr: bytes) -> str:
    """The last lines of FFmpeg's output: the reason, not the version banner at the top."""
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    return " | ".join(lines[-_STDERR_TAIL_LINES:])


def classify_failure(tail: str) -> str:
    """``not_audio`` when FFmpeg does not recognise the input or finds no audio stream,
    ``corrupt`` when it recognised a container but could not decode it (e.g. truncated)."""
    return "not_audio" if any(p in tail for p in _NOT_AUDIO) else "corrupt"


def decode(path: str | Path, clip_id: str, max_seconds: float) -> DecodedClip:
    """Decode one file; raise DecodeError(kind) for empty, not_audio, corrupt or too_long.

    Only ``max_seconds`` plus a little is decoded, so an over-long file costs no more than
    an allowed one.
    """
    start = time.perf_counter()
    path = Path(path)
    if path.stat().st_size == 0:
        raise DecodeError("empty", "file has 0 bytes")
    argv = ["ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-i", str(path),
            "-t", f"{max_seconds + 1:.3f}", "-vn", "-ac", "1", "-ar", str(SAMPLE_RATE),
            "-f", "f32le", "-"]
    proc = subprocess.run(argv, capture_output=True, check=False)
    if proc.returncode != 0:
        tail = _stderr_tail(proc.stderr)
        raise DecodeError(classify_failure(tail), f"ffmpeg exit {proc.returncode}: {tail}")
    audio = np.frombuffer(proc.stdout, dtype=np.float32).copy()  # writable, as torch wants
    if audio.size == 0:
        raise DecodeError("corrupt", f"ffmpeg decoded no samples: {_stderr_tail(proc.stderr)}")
    if audio.size > max_seconds * SAMPLE_RATE:
        raise DecodeError("too_long", f"longer than the {max_seconds:g} s limit")
    return DecodedClip(clip_id=clip_id, audio=audio, decode_s=time.perf_counter() - start)


@dataclass
class DecodeJob:
    clip_id: str
    path: Path


class DecodePool:
    """Decode ``jobs`` in ``workers`` threads, starting at construction (so the first clips
    are ready while the model loads) and staying at most ``prefetch`` clips ahead of the
    consumer. Iterating yields (job, clip or DecodeError) in job order."""

    def __init__(self, jobs: Iterable[DecodeJob], workers: int, max_seconds: float,
                 prefetch: int | None = None) -> None:
        self.max_seconds = max_seconds
        self.prefetch = prefetch or 2 * max(1, workers)
        self._jobs = iter(jobs)
        self._executor = ThreadPoolExecutor(max(1, workers), thread_name_prefix="decode")
        self._pending: deque[tuple[DecodeJob, Future]] = deque()
        self._fill()

    def __enter__(self) -> "DecodePool":
        return self

    def __exit__(self, *exc: object) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _fill(self) -> None:
        while len(self._pending) < self.prefetch:
            job = next(self._jobs, None)
            if job is None:
                return
            self._pending.append((job, self._executor.submit(self._decode, job)))

    def _decode(self, job: DecodeJob) -> DecodedClip | DecodeError:
        try:
            return decode(job.path, job.clip_id, self.max_seconds)
        except DecodeError as exc:
            return exc
        except OSError as exc:
            return DecodeError("corrupt", f"cannot read {job.path.name}: {exc}")

    def __iter__(self) -> Iterator[tuple[DecodeJob, DecodedClip | DecodeError]]:
        while self._pending:
            job, fut = self._pending.popleft()
            self._fill()
            yield job, fut.result()
