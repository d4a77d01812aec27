"""Turn a day's source listing (local directory or Globus collection) into contract Clips."""

from __future__ import annotations

import os
from collections.abc import Iterable

from audio_hpc.contract import AUDIO_EXTENSIONS, Clip


def is_audio(name: str) -> bool:
    return name.lower().endswith(AUDIO_EXTENSIONS)


def staged_name(rel_path: str) -> str:
    """Flat, unique-within-the-day file name on staging for a path relative to the day."""
    return rel_path.replace("/", "__")


def clips_from(date: str, day_root: str, entries: Iterable[tuple[str, int]]) -> list[Clip]:
    """Clips for (path relative to the day directory, size) pairs, sorted for stable shards."""
    return [
        Clip(
            clip_id=f"{date}/{rel}",
            name=staged_name(rel),
            source_path=f"{day_root.rstrip('/')}/{rel}",
            size=size,
        )
        for rel, size in sorted(entries)
        if is_audio(rel)
    ]


def list_local(source_root: str, date: str) -> list[Clip]:
    """Every audio/video file under ``<source_root>/<date>/``, recursively.

    ``os.scandir`` with plain string paths: a day holds tens of thousands of files, and
    pathlib objects per file cost more than the listing itself."""
    day = os.path.join(source_root, date)
    if not os.path.isdir(day):
        raise FileNotFoundError(f"source directory {day} does not exist")
    entries: list[tuple[str, int]] = []
    pending = [""]
    while pending:
        rel_dir = pending.pop()
        with os.scandir(os.path.join(day, rel_dir)) as it:
            for entry in it:
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                if entry.is_dir(follow_symlinks=True):
                    pending.append(rel)
                    continue
                try:
                    size = entry.stat().st_size
                except OSError:  # e.g. a dangling link: listed, so the transfer reports it failed
                    size = -1
                entries.append((rel, size))
    return clips_from(date, day, entries)
