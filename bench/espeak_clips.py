"""Synthesised English speech with known transcripts (espeak-ng + FFmpeg), for WER checks.

Each clip strings random sentences together with short pauses, in one voice at one speed,
so the VAD has real pauses to cut at and the reference text is exact.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16_000
VOICES = ("en-us", "en-gb", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us+f3")
SPEEDS = (150, 175, 200)

SENTENCES = (
    "The meeting started at nine in the morning and ended just before lunch.",
    "Please send the updated report to the whole team by Friday afternoon.",
    "The train to the city was delayed because of heavy snow on the tracks.",
    "She opened the window to let some fresh air into the small office.",
    "We need to check the numbers again before we publish the results.",
    "The children played in the park until the sun went down.",
    "He bought a new computer because the old one was far too slow.",
    "Our budget for the next quarter will be a little smaller than planned.",
    "The doctor said that a short walk every day is good for your heart.",
    "Can you remind me when the next flight to London leaves?",
    "The river flows through the valley and into the northern sea.",
    "Most of the questions were about the price and the delivery date.",
    "The library will be closed on Monday for the national holiday.",
    "I think we should start the project with a small test group.",
    "The weather forecast says it will rain for most of the weekend.",
    "They moved to a larger house with a garden and a quiet street.",
    "Every customer receives a receipt and a short survey by email.",
    "The engine makes a strange noise when the car is cold.",
    "Water boils at one hundred degrees at sea level.",
    "The committee will vote on the new proposal next week.",
    "My sister works as a teacher in a school near the harbour.",
    "The museum has a large collection of old maps and paintings.",
    "Turn left at the second light and the bank is on your right.",
    "We ordered soup, fresh bread and a salad for the table.",
    "The software update fixed the problem with the printer.",
    "A good night of sleep helps you remember what you learned.",
    "The farmers hope for warm weather during the harvest.",
    "Our team won the final match by two goals to one.",
    "The price of coffee has gone up again this year.",
    "He forgot his keys at home and had to wait for his wife.",
    "The new bridge will connect the two sides of the town.",
    "Please keep your phone on silent during the presentation.",
    "The storm knocked down several trees along the main road.",
    "She speaks three languages and is learning a fourth one.",
    "The company plans to open two new stores in the spring.",
    "Remember to save your work before you close the program.",
    "The birds return to the lake every year in early April.",
    "We will discuss the schedule after the short coffee break.",
    "The hospital needs more nurses for the night shift.",
    "The light in the kitchen has been broken for a week.",
)


@dataclass
class SpeechClip:
    audio: np.ndarray
    text: str
    voice: str
    speed: int

    @property
    def duration_s(self) -> float:
        return len(self.audio) / SAMPLE_RATE


def speak(text: str, voice: str, speed: int) -> np.ndarray:
    """espeak-ng's speech for ``text`` as 16 kHz mono float32 (resampled by FFmpeg)."""
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", text],
        check=True,
        capture_output=True,
    ).stdout
    raw = subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-i",
            "pipe:0",
            "-ac",
            "1",
            "-ar",
            str(SAMPLE_RATE),
            "-f",
            "f32le",
            "pipe:1",
        ],
        input=wav,
        check=True,
        capture_output=True,
    ).stdout
    return np.frombuffer(raw, dtype=np.float32)


def make_clip(rng: np.random.Generator, target_s: float, voice: str, speed: int) -> SpeechClip:
    """Random sentences, 0.2-0.9 s apart, until the clip reaches ``target_s``."""
    parts, texts, total = [], [], 0.0
    while total < target_s:
        sentence = SENTENCES[rng.integers(len(SENTENCES))]
        speech = speak(sentence, voice, speed)
        if parts and total + len(speech) / SAMPLE_RATE > target_s + 5:
            break
        gap = np.zeros(int(rng.uniform(0.2, 0.9) * SAMPLE_RATE), dtype=np.float32)
        parts += [gap, speech]
        texts.append(sentence)
        total += (len(gap) + len(speech)) / SAMPLE_RATE
    return SpeechClip(
        np.concatenate(parts + [np.zeros(SAMPLE_RATE // 4, np.float32)]),
        " ".join(texts),
        voice,
        speed,
    )


def corpus(n: int, min_s: float = 10.0, max_s: float = 60.0, seed: int = 0) -> list[SpeechClip]:
    """``n`` clips cycling through voices and speeds, lengths uniform in [min_s, max_s]."""
    rng = np.random.default_rng(seed)
    return [
        make_clip(
            rng,
            rng.uniform(min_s, max_s),
            VOICES[i % len(VOICES)],
            SPEEDS[(i // len(VOICES)) % len(SPEEDS)],
        )
        for i in range(n)
    ]
