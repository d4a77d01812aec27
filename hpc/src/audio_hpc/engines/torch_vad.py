"""Energy-based speech detection and chunking at silences, numpy only.

Local by design: Silero and the hub are unreachable on the cluster, and pyannote would pull
its whole stack into the torch engine. A frame is speech when its energy stands well above
the clip's own noise floor; gaps shorter than ``min_gap_s`` are bridged. Chunks for the model
are at most ``max_chunk_s`` (Whisper's 30 s window) and end in silences where possible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16_000
FRAME = 320  # 20 ms


@dataclass(frozen=True)
class VadConfig:
    above_floor_db: float = 12.0  # speech frames exceed the 10th-percentile energy by this
    min_level_db: float = -55.0  # and this absolute level (dBFS), so hiss is never speech
    min_gap_s: float = 0.4  # shorter pauses stay inside one region
    min_speech_s: float = 0.15  # shorter blips are dropped
    pad_s: float = 0.2  # context kept around each region
    max_chunk_s: float = 30.0


def frame_db(audio: np.ndarray) -> np.ndarray:
    """Energy per 20 ms frame in dBFS."""
    n = len(audio) // FRAME
    frames = audio[: n * FRAME].astype(np.float32).reshape(n, FRAME)
    return 10.0 * np.log10(np.mean(frames**2, axis=1) + 1e-10)


def speech_regions(audio: np.ndarray, cfg: VadConfig = VadConfig()) -> list[tuple[int, int]]:
    """Speech as (start, end) sample ranges, padded, gaps < ``min_gap_s`` bridged."""
    db = frame_db(audio)
    if db.size == 0:
        return []
    threshold = max(float(np.percentile(db, 10)) + cfg.above_floor_db, cfg.min_level_db)
    voiced = np.flatnonzero(db > threshold)
    if voiced.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(voiced) * FRAME > cfg.min_gap_s * SAMPLE_RATE)
    starts = np.concatenate(([voiced[0]], voiced[breaks + 1]))
    ends = np.concatenate((voiced[breaks], [voiced[-1]])) + 1
    pad = int(cfg.pad_s * SAMPLE_RATE)
    return [
        (max(0, int(s) * FRAME - pad), min(len(audio), int(e) * FRAME + pad))
        for s, e in zip(starts, ends)
        if (e - s) * FRAME >= cfg.min_speech_s * SAMPLE_RATE
    ]


def _split_long(audio: np.ndarray, start: int, end: int, limit: int) -> list[tuple[int, int]]:
    """Cut a region longer than ``limit`` at its quietest frame in the last third of each window."""
    out = []
    while end - start > limit:
        lo, hi = start + 2 * limit // 3, start + limit
        db = frame_db(audio[lo:hi])
        cut = lo + int(np.argmin(db)) * FRAME + FRAME // 2 if db.size else hi
        out.append((start, cut))
        start = cut
    out.append((start, end))
    return out


def chunk(audio: np.ndarray, cfg: VadConfig = VadConfig()) -> list[tuple[int, int]]:
    """Sample ranges to transcribe, each <= ``max_chunk_s``; [] when there is no speech.

    A clip that fits one window goes whole (one range over its speech); longer clips merge
    consecutive regions greedily while they fit, so cuts fall in pauses.
    """
    limit = int(cfg.max_chunk_s * SAMPLE_RATE)
    regions = speech_regions(audio, cfg)
    if not regions:
        return []
    if len(audio) <= limit:
        return [(regions[0][0], regions[-1][1])]
    pieces = [p for s, e in regions for p in _split_long(audio, s, e, limit)]
    chunks = [pieces[0]]
    for s, e in pieces[1:]:
        if e - chunks[-1][0] <= limit:
            chunks[-1] = (chunks[-1][0], e)
        else:
            chunks.append((s, e))
    return chunks
