"""Packing speech chunks of many clips into shared 30 s windows.

Why: the encoder costs the same for every 30 s window however much audio it holds, and a day
of 10-60 s clips leaves windows ~70 % full. Here several chunks share one window, ``gap_s`` of
silence apart, and each chunk becomes its own decoder *row* that cross-attends only to its
span of the window's encoder output (its frames plus ``margin_s`` either side, never reaching
a neighbour) and to the padding after the window's last chunk (``reserve_s`` at least; without
that silence to look at, Whisper does not see its speech end and repeats its last sentence).
So each chunk's text comes back on its own row, with no timestamp tokens to split and no
boundary to guess, and reading only its frames makes the row's decoding cheaper.

Off by default: on tiny.en (6-20 s clips) it still costs 2-4 WER points (a chunk that does
not start its window sometimes loses its first sentence); numbers in ``bench/RESULTS.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from audio_hpc.engines.base import SAMPLE_RATE

WINDOW_SAMPLES = 30 * SAMPLE_RATE
FRAMES = 1500  # encoder frames per 30 s window
SAMPLES_PER_FRAME = WINDOW_SAMPLES // FRAMES


@dataclass(frozen=True)
class Packing:
    enabled: bool = False  # True: chunks share windows (costs WER, see above)
    gap_s: float = 1.0  # silence between chunks sharing a window
    margin_s: float = 0.5  # frames either side of a chunk its row may attend to (< gap_s)
    reserve_s: float = 2.0  # padding kept free at the end of a shared window

    def __post_init__(self) -> None:
        if not 0 <= self.margin_s < self.gap_s:
            raise ValueError(f"margin_s ({self.margin_s}) must be >= 0 and < gap_s ({self.gap_s})")


@dataclass(frozen=True)
class Span:
    """The encoder frames a row attends to: [lo, hi) (its chunk) and [lo2, hi2) (padding)."""

    window: int  # index into Layout.windows
    lo: int
    hi: int
    lo2: int
    hi2: int


@dataclass
class Layout:
    """Windows to encode and, per row (in the caller's order), the span it decodes."""

    windows: list[np.ndarray]
    spans: list[Span]

    def subset(self, rows: list[int]) -> Layout:
        """The layout of ``rows`` alone (for re-decoding them), windows renumbered."""
        used = sorted({self.spans[r].window for r in rows})
        new = {w: i for i, w in enumerate(used)}
        return Layout(
            [self.windows[w] for w in used],
            [replace(self.spans[r], window=new[self.spans[r].window]) for r in rows],
        )


def _frames(samples: int) -> int:
    return min(FRAMES, math.ceil(samples / SAMPLES_PER_FRAME))


def _span(window: int, start: int, end: int, content_end: int, p: Packing) -> Span:
    margin = int(p.margin_s * SAMPLE_RATE)
    lo, hi = max(0, (start - margin) // SAMPLES_PER_FRAME), _frames(end + margin)
    return Span(window, lo, hi, max(hi, _frames(content_end)), FRAMES)


def pack(pieces: list[np.ndarray], packing: Packing) -> Layout:
    """Place ``pieces`` (each <= 30 s) into windows, first fit by decreasing length; a
    shared window keeps ``reserve_s`` free at its end."""
    gap = int(packing.gap_s * SAMPLE_RATE)
    room = WINDOW_SAMPLES - int(packing.reserve_s * SAMPLE_RATE)
    fills: list[int] = []  # samples used per window
    placed: list[tuple[int, int]] = [(0, 0)] * len(pieces)  # (window, offset) per piece
    for i in sorted(range(len(pieces)), key=lambda i: -len(pieces[i])):
        n = min(len(pieces[i]), WINDOW_SAMPLES)
        w = next(
            (w for w, used in enumerate(fills) if packing.enabled and used + gap + n <= room), None
        )
        if w is None:
            fills.append(n)
            placed[i] = (len(fills) - 1, 0)
        else:
            placed[i] = (w, fills[w] + gap)
            fills[w] += gap + n
    windows = [np.zeros(used, dtype=np.float32) for used in fills]
    spans = []
    for piece, (w, offset) in zip(pieces, placed):
        n = min(len(piece), WINDOW_SAMPLES)
        windows[w][offset : offset + n] = piece[:n]
        spans.append(_span(w, offset, offset + n, fills[w], packing))
    return Layout(windows, spans)
