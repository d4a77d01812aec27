"""Word error rate (word-level Levenshtein), shared by the tests and the benchmark.

Both sides normalise the same way (lower case, punctuation dropped, apostrophes kept) so a
WER number means the same thing wherever it is quoted.
"""
from __future__ import annotations

import re
from typing import Iterable

_WORD = re.compile(r"[a-z0-9']+")


def words(text: str) -> list[str]:
    """Normalised words of ``text``: what both reference and hypothesis are compared on."""
    return _WORD.findall(text.lower().replace("-", " "))


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Substitutions + deletions + insertions turning ``ref`` into ``hyp``."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i]
        for j, h in enumerate(hyp, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h)))
        prev = cur
    return prev[-1]


def wer(reference: str, hypothesis: str) -> float:
    """WER of one utterance; 0.0 for an empty reference with an empty hypothesis."""
    ref, hyp = words(reference), words(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return edit_distance(ref, hyp) / len(ref)


def corpus_wer(pairs: Iterable[tuple[str, str]]) -> float:
    """Total edits over total reference words (long utterances weigh more, as they should)."""
    errors = total = 0
    for reference, hypothesis in pairs:
        ref = words(reference)
        errors += edit_distance(ref, words(hypothesis))
        total += len(ref)
    return errors / total if total else 0.0
