"""Word error rate as published numbers compute it, for the tests and the benchmarks.

Both sides go through Whisper's English text normalizer (PyPI ``whisper-normalizer``, the one
the Open ASR leaderboard applies: spelled-out numbers, British spellings, contractions and
punctuation made uniform), then ``jiwer`` counts word edits, so a WER quoted here means what
a leaderboard's does.
"""
from __future__ import annotations

from typing import Iterable

import jiwer
from whisper_normalizer.english import EnglishTextNormalizer

normalize = EnglishTextNormalizer()


def corpus_wer(pairs: Iterable[tuple[str, str]]) -> float:
    """Total word edits over total reference words of (reference, hypothesis) pairs."""
    normalized = [(normalize(r), normalize(h)) for r, h in pairs]
    if not normalized:
        return 0.0
    return jiwer.wer([r for r, _ in normalized], [h for _, h in normalized])


def wer(reference: str, hypothesis: str) -> float:
    """WER of one utterance."""
    return corpus_wer([(reference, hypothesis)])
