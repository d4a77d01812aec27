"""Synthesize a day of sample clips with known text (espeak-ng + FFmpeg), plus bad ones.

Used by the README demo and the tests: ``<root>/<day>/`` receives the clips in several
containers/codecs and ``<root>/<day>.expected.json`` maps each clip name to its text (or to
the error kind a bad clip must be recorded with).

    python3 sample_clips.py ROOT DAY [--clips N] [--no-bad]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

# Harvard sentences (IEEE 1969), public domain: phonetically balanced, easy to score.
SENTENCES = [
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.",
    "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.",
    "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.",
    "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.",
    "The girl at the booth sold fifty bonds.",
]
# (voice, words per minute, container extension, FFmpeg codec arguments)
VARIANTS = [
    ("en-us", 150, ".m4a", ["-c:a", "aac", "-b:a", "64k"]),
    ("en-gb", 165, ".mp4", ["-c:a", "aac", "-b:a", "64k"]),
    ("en-us+m3", 140, ".mp3", ["-c:a", "libmp3lame", "-q:a", "5"]),
    ("en-gb+f2", 155, ".wav", ["-c:a", "pcm_s16le"]),
]
BAD_CLIPS = {  # name -> error kind the pipeline must record
    "corrupt.m4a": "corrupt",
    "empty.mp4": "empty",
    "notes.mp4": "not_audio",
    "silence.wav": "silent",
}


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *args], check=True)


def speak(text: str, voice: str, wpm: int, out: Path, codec: list[str]) -> None:
    """Speak ``text`` into ``out``, padded with a little silence like a real recording."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-g", "6", "-w", str(wav), text],
                       check=True)
        _ffmpeg("-i", str(wav), "-af", "adelay=600|600,apad=pad_dur=0.8", "-ar", "22050",
                *codec, str(out))


def make_bad_clips(day_dir: Path, prefix: str = "") -> dict[str, str]:
    """Write the kinds of ``BAD_CLIPS`` (names prefixed); return ``{name: error kind}``."""
    good = day_dir / "_tmp_source.m4a"
    speak(" ".join(SENTENCES[:3]), "en-us", 160, good, VARIANTS[0][3])
    data = good.read_bytes()
    good.unlink()
    (day_dir / f"{prefix}corrupt.m4a").write_bytes(data[: len(data) // 3])  # moov atom cut off
    (day_dir / f"{prefix}empty.mp4").write_bytes(b"")
    (day_dir / f"{prefix}notes.mp4").write_text("meeting notes, not a video\n" * 20)
    _ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "10",
            str(day_dir / f"{prefix}silence.wav"))
    return {prefix + name: kind for name, kind in BAD_CLIPS.items()}


def make_day(root: Path, day: str, clips: int = 6, bad: bool = True,
             sentences_per_clip: int = 4) -> dict[str, str]:
    """Write the day's clips; return ``{name: expected text}`` (bad clips: ``error:<kind>``)."""
    day_dir = root / day
    # Exactly these clips: none left from an earlier call (a test's day relative to today
    # lands on a date an earlier session filled differently).
    shutil.rmtree(day_dir, ignore_errors=True)
    day_dir.mkdir(parents=True)
    expected: dict[str, str] = {}
    for i in range(clips):
        voice, wpm, ext, codec = VARIANTS[i % len(VARIANTS)]
        start = (i * sentences_per_clip) % len(SENTENCES)
        text = " ".join((SENTENCES * 2)[start:start + sentences_per_clip])
        name = f"clip_{i:03d}{ext}"
        speak(text, voice, wpm, day_dir / name, codec)
        expected[name] = text
    if bad:
        expected.update({name: f"error:{kind}" for name, kind in make_bad_clips(day_dir).items()})
    (root / f"{day}.expected.json").write_text(json.dumps(expected, indent=1))
    return expected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("day")
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--no-bad", action="store_true")
    args = parser.parse_args()
    expected = make_day(args.root, args.day, args.clips, bad=not args.no_bad)
    print(f"wrote {len(expected)} clips to {args.root / args.day}")


if __name__ == "__main__":
    main()
