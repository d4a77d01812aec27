"""Compressed clip → 16 kHz mono float32, with a per-clip failure reason, in a prefetching pool.

Decoding runs in-process through PyAV (FFmpeg's libraries) where it is installed: no process
start per clip, about twice FFmpeg's rate per core (FACTS), and the pool runs it in worker
*processes* (Python threads do not scale it: the GIL). Without PyAV, or for a clip PyAV
cannot read, an FFmpeg subprocess decodes it (threads suffice then), and FFmpeg's own messages
classify a failure, so a bad clip gets the same reason either way. The pool keeps a bounded
number of clips decoded ahead so the engine never waits on decoding while memory stays bounded.
"""

from __future__ import annotations

import multiprocessing
import subprocess
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audio_hpc.engines.base import SAMPLE_RATE, DecodedClip

# Phrases FFmpeg prints when the input is not a media file it recognises, or has no audio.
_NOT_AUDIO = ("detected only with low score", "does not contain any stream", "matches no streams")
_STDERR_TAIL_LINES = 4


class DecodeError(Exception):
    """A clip that cannot be turned into audio; ``kind`` is one of the contract's ERROR_KINDS."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind

    def __reduce__(self) -> tuple:  # it travels back from decode worker processes
        return DecodeError, (self.kind, str(self))


def _stderr_tail(stderr: bytes) -> str:
    """The last lines of FFmpeg's output: the reason, not the version banner at the top."""
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    return " | ".join(lines[-_STDERR_TAIL_LINES:])


def classify_failure(tail: str) -> str:
    """``not_audio`` when FFmpeg does not recognise the input or finds no audio stream,
    ``corrupt`` when it recognised a container but could not decode it (e.g. truncated)."""
    return "not_audio" if any(p in tail for p in _NOT_AUDIO) else "corrupt"


def _failure_kind(path: Path, tail: str) -> str:
    """``classify_failure``, asking FFmpeg once more at verbose level where its default
    output cannot tell: FFmpeg 7 (Debian 13) logs "detected only with low score" (a file
    that is no media at all) at verbose level only, and 5.1 (Debian 12) as a warning."""
    kind = classify_failure(tail)
    if kind == "not_audio":
        return kind
    probe = subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "verbose", "-i", str(path)],
        capture_output=True,
        check=False,
    )
    return classify_failure(probe.stderr.decode(errors="replace"))


try:
    import av
except ImportError:  # the FFmpeg subprocess decodes everything
    av = None


def decode(path: str | Path, clip_id: str, max_seconds: float) -> DecodedClip:
    """Decode one file; raise DecodeError(kind) for empty, not_audio, corrupt or too_long.

    Only ``max_seconds`` plus a little is decoded, so an over-long file costs no more than
    an allowed one. PyAV first where installed; FFmpeg for the rest (and for the reason).
    """
    start = time.perf_counter()
    path = Path(path)
    if path.stat().st_size == 0:
        raise DecodeError("empty", "file has 0 bytes")
    audio = None
    if av is not None:
        try:
            audio = _pyav_samples(path, max_seconds)
        except (av.FFmpegError, ValueError, IndexError):
            audio = None  # FFmpeg decides, and says why
    if audio is None or audio.size == 0:
        audio = _ffmpeg_samples(path, max_seconds)
    if audio.size > max_seconds * SAMPLE_RATE:
        raise DecodeError("too_long", f"longer than the {max_seconds:g} s limit")
    return DecodedClip(clip_id=clip_id, audio=audio, decode_s=time.perf_counter() - start)


def _pyav_samples(path: Path, max_seconds: float) -> np.ndarray:
    """The first audio stream, resampled by libswresample (as ``ffmpeg -ac 1 -ar``) up to
    ``max_seconds`` + 1 s."""
    limit = int((max_seconds + 1) * SAMPLE_RATE)
    parts: list[np.ndarray] = []
    got = 0
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                parts.append(out.to_ndarray()[0])
                got += out.samples
            if got >= limit:
                break
        else:
            parts += [out.to_ndarray()[0] for out in resampler.resample(None)]
    audio = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return audio[:limit]


def _ffmpeg_samples(path: Path, max_seconds: float) -> np.ndarray:
    argv = [
        "ffmpeg",
        "-nostdin",
        "-hide_banner",
        "-nostats",
        "-i",
        str(path),
        "-t",
        f"{max_seconds + 1:.3f}",
        "-vn",
        "-ac",
        "1",
        "-ar",
        str(SAMPLE_RATE),
        "-f",
        "f32le",
        "-",
    ]
    proc = subprocess.run(argv, capture_output=True, check=False)
    if proc.returncode != 0:
        tail = _stderr_tail(proc.stderr)
        raise DecodeError(_failure_kind(path, tail), f"ffmpeg exit {proc.returncode}: {tail}")
    audio = np.frombuffer(proc.stdout, dtype=np.float32).copy()  # writable, as torch wants
    if audio.size == 0:
        raise DecodeError("corrupt", f"ffmpeg decoded no samples: {_stderr_tail(proc.stderr)}")
    return audio


@dataclass
class DecodeJob:
    clip_id: str
    path: Path


def decode_job(job: DecodeJob, max_seconds: float) -> DecodedClip | DecodeError:
    """One job's outcome, never raised (it crosses a process boundary)."""
    try:
        return decode(job.path, job.clip_id, max_seconds)
    except DecodeError as exc:
        return exc
    except OSError as exc:
        return DecodeError("corrupt", f"cannot read {job.path.name}: {exc}")


class DecodePool:
    """Decode ``jobs`` in ``workers`` processes (PyAV) or threads (FFmpeg subprocesses),
    starting at construction (so the first clips are ready while the model loads) and staying
    at most ``prefetch`` clips ahead of the consumer. Iterating yields (job, clip or
    DecodeError) in job order. Processes are spawned, not forked: the engine's threads and
    CUDA state must not be copied into them."""

    def __init__(
        self,
        jobs: Iterable[DecodeJob],
        workers: int,
        max_seconds: float,
        prefetch: int | None = None,
        processes: bool | None = None,
    ) -> None:
        self.max_seconds = max_seconds
        self.prefetch = prefetch or 2 * max(1, workers)
        self._jobs = iter(jobs)
        self.processes = av is not None if processes is None else processes
        self._executor: Executor = (
            ProcessPoolExecutor(max(1, workers), mp_context=multiprocessing.get_context("spawn"))
            if self.processes
            else ThreadPoolExecutor(max(1, workers), thread_name_prefix="decode")
        )
        self._pending: deque[tuple[DecodeJob, Future]] = deque()
        self._fill()

    def __enter__(self) -> DecodePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _fill(self) -> None:
        while len(self._pending) < self.prefetch:
            job = next(self._jobs, None)
            if job is None:
                return
            self._pending.append((job, self._executor.submit(decode_job, job, self.max_seconds)))

    def __iter__(self) -> Iterator[tuple[DecodeJob, DecodedClip | DecodeError]]:
        while self._pending:
            job, fut = self._pending.popleft()
            self._fill()
            yield job, fut.result()
