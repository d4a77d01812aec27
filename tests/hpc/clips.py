"""Synthesize a day of test clips: espeak-ng speech with known text (several voices, speeds
and containers) plus the broken kinds the pipeline must record as failed."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

# (relative path, text, espeak-ng voice, words per minute)
SPEECH: list[tuple[str, str, str, int]] = [
    ("a01.m4a", "The quick brown fox jumps over the lazy dog near the river bank.", "en-us", 150),
    ("a02.mp4", "Please remember to bring your umbrella because it will rain tomorrow.", "en", 140),
    ("a03.wav", "Our meeting starts at nine in the morning in the main conference room.", "en-us+m3", 160),
    ("a04.mp3", "She sells fresh bread and warm coffee at the market every weekend.", "en+f3", 140),
    ("a05.m4a", "The children played football in the park until the sun went down.", "en-us", 170),
    ("a06.mp4", "Scientists measured the temperature of the ocean for many years.", "en", 150),
    ("a07.wav", "Turn left at the next corner and walk straight to the train station.", "en-us+f2", 145),
    ("a08.m4a", "He opened the window to let the cool evening air into the kitchen.", "en+m3", 155),
    ("a09.mp3", "The library will be closed on Monday for repairs to the heating system.", "en-us", 160),
    ("sub/a10.m4a", "My sister writes long letters to her friends who live in other countries.", "en", 150),
]
# relative path -> error_kind the audio job must record
BROKEN = {"z_corrupt.m4a": "corrupt", "z_empty.m4a": "empty", "z_text.mp4": "not_audio",
          "z_silent.m4a": "silent"}

_FFMPEG = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
_CODEC = {".m4a": ["-c:a", "aac"], ".mp4": ["-c:a", "aac"], ".mp3": ["-c:a", "libmp3lame"],
          ".wav": []}


def _encode(src: Path, dest: Path) -> None:
    subprocess.run([*_FFMPEG, "-i", str(src), *_CODEC[dest.suffix], str(dest)], check=True)


def make_day(day_dir: Path) -> dict[str, str]:
    """Write the clips under ``day_dir``; return {relative path: reference text}."""
    day_dir.mkdir(parents=True, exist_ok=True)
    tmp = day_dir / ".wav"
    tmp.mkdir(exist_ok=True)
    refs = {}
    for rel, text, voice, wpm in SPEECH:
        raw = tmp / f"{Path(rel).stem}.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(raw), text], check=True)
        dest = day_dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        _encode(raw, dest)
        refs[rel] = text
    good = (day_dir / "a01.m4a").read_bytes()
    (day_dir / "z_corrupt.m4a").write_bytes(good[: len(good) // 3])   # moov atom cut off
    (day_dir / "z_empty.m4a").write_bytes(b"")
    (day_dir / "z_text.mp4").write_text("this is a text file, not a video\n")
    subprocess.run([*_FFMPEG, "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "10",
                    "-c:a", "aac", str(day_dir / "z_silent.m4a")], check=True)
    for p in tmp.iterdir():
        p.unlink()
    tmp.rmdir()
    os.chmod(day_dir, 0o755)
    return refs
