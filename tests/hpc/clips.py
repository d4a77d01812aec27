"""The day tests/hpc transcribes: fixed sentences in several voices, speeds, containers and
a subfolder (synthesized by the demo's own ``sample_clips``), plus the broken kinds the
pipeline must record as failed."""

from __future__ import annotations

import os
from pathlib import Path

import sample_clips

# (relative path, text, espeak-ng voice, words per minute)
SPEECH: list[tuple[str, str, str, int]] = [
    ("a01.m4a", "The quick brown fox jumps over the lazy dog near the river bank.", "en-us", 150),
    ("a02.mp4", "Please remember to bring your umbrella because it will rain tomorrow.", "en", 140),
    (
        "a03.wav",
        "Our meeting starts at nine in the morning in the main conference room.",
        "en-us+m3",
        160,
    ),
    ("a04.mp3", "She sells fresh bread and warm coffee at the market every weekend.", "en+f3", 140),
    ("a05.m4a", "The children played football in the park until the sun went down.", "en-us", 170),
    ("a06.mp4", "Scientists measured the temperature of the ocean for many years.", "en", 150),
    (
        "a07.wav",
        "Turn left at the next corner and walk straight to the train station.",
        "en-us+f2",
        145,
    ),
    ("a08.m4a", "He opened the window to let the cool evening air into the kitchen.", "en+m3", 155),
    (
        "a09.mp3",
        "The library will be closed on Monday for repairs to the heating system.",
        "en-us",
        160,
    ),
    (
        "sub/a10.m4a",
        "My sister writes long letters to her friends who live in other countries.",
        "en",
        150,
    ),
]
BROKEN_PREFIX = "z_"
# relative path -> error_kind the audio job must record
BROKEN = {BROKEN_PREFIX + name: kind for name, kind in sample_clips.BAD_CLIPS.items()}
_CODEC = {ext: codec for _, _, ext, codec in sample_clips.VARIANTS}


def make_day(day_dir: Path) -> dict[str, str]:
    """Write the clips under ``day_dir``; return {relative path: reference text}."""
    refs = {}
    for rel, text, voice, wpm in SPEECH:
        dest = day_dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        sample_clips.speak(text, voice, wpm, dest, _CODEC[dest.suffix])
        refs[rel] = text
    sample_clips.make_bad_clips(day_dir, BROKEN_PREFIX)
    os.chmod(day_dir, 0o755)
    return refs
