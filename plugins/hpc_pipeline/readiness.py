"""Is a source day complete enough to plan? Pure rules over successive listing snapshots.

The run that fires at midnight may find day D still arriving. Planning then would leave the
late clips for a manual re-run, so the DAG waits until the configured rule holds:

- ``marker``: the uploader writes ``<day>/<marker_name>`` (e.g. ``_READY``) when done;
- ``stable``: at least ``min_clips`` clips, and the listing (every file's path, size and
  mtime) has not changed for ``stable_s`` *as observed by the poller*. File mtimes alone are
  not trusted: copy tools (rsync -a, Globus) preserve the writer's old timestamps.

No I/O here: the trigger feeds :class:`ReadinessWatch` one :class:`Listing` per poll, with
the time it was taken, so the rules are tested on snapshots alone.
"""

from __future__ import annotations

import datetime as dt
import posixpath
from dataclasses import dataclass
from typing import Any

from audio_hpc.contract import AUDIO_EXTENSIONS
from hpc_pipeline.config import Readiness


@dataclass(frozen=True)
class SourceFile:
    path: str  # relative to the day directory
    size: int
    mtime: float  # epoch seconds


@dataclass(frozen=True)
class Listing:
    """One poll's view of a source day; ``files`` is None when the directory does not exist."""

    where: str
    files: tuple[SourceFile, ...] | None
    taken_at: float  # epoch seconds

    @property
    def clips(self) -> list[SourceFile]:
        return [f for f in self.files or () if f.path.lower().endswith(AUDIO_EXTENSIONS)]

    def signature(self) -> frozenset[SourceFile] | None:
        return None if self.files is None else frozenset(self.files)


@dataclass(frozen=True)
class Decision:
    ready: bool
    waiting_for: str  # what is missing ("" when ready), as the deadline message says it
    changed: bool  # the listing differs from the previous poll's


def _clock(ts: float | None) -> str:
    return (
        "-"
        if ts is None
        else dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    )


def duration(seconds: float) -> str:
    """``22500`` -> ``"6h15m"``; ``95`` -> ``"1m35s"``."""
    s = int(round(seconds))
    h, m, sec = s // 3600, s % 3600 // 60, s % 60
    return f"{h}h{m:02d}m" if h else f"{m}m{sec:02d}s" if m else f"{sec}s"


def _size(n: int) -> str:
    if n < 1000:
        return f"{n} B"
    value = float(n)
    for unit in ("KB", "MB", "GB", "TB"):  # noqa: B007  (the unit the loop stops at is used)
        value /= 1000
        if value < 1000:
            break
    return f"{value:,.1f} {unit}"


class ReadinessWatch:
    """The rule's state across polls: the last listing and since when it is unchanged."""

    def __init__(self, rule: Readiness) -> None:
        self.rule = rule
        self.last: Listing | None = None
        self.unchanged_since: float | None = None  # first poll that saw the current listing
        self.polls = 0

    def observe(self, listing: Listing) -> Decision:
        changed = self.last is None or listing.signature() != self.last.signature()
        if changed:
            self.unchanged_since = listing.taken_at
        self.last = listing
        self.polls += 1
        missing = self._missing(listing)
        return Decision(ready=not missing, waiting_for=missing, changed=changed)

    def _missing(self, listing: Listing) -> str:
        if listing.files is None:
            return f"directory {listing.where} does not exist"
        if self.rule.rule == "marker":
            marker = self.rule.marker_name
            if not any(f.path == marker for f in listing.files):
                return f"no marker file `{marker}` in {listing.where}"
            return ""
        clips = len(listing.clips)
        if clips < self.rule.min_clips:
            return (
                f"{clips} clips in {listing.where} (at least {self.rule.min_clips} needed "
                f"before the listing can count as stable)"
            )
        quiet = listing.taken_at - (self.unchanged_since or listing.taken_at)
        if quiet < self.rule.stable_s:
            return (
                f"listing of {listing.where} unchanged for only {duration(quiet)} "
                f"(needs {duration(self.rule.stable_s)})"
            )
        return ""

    def snapshot(self, day: str, started_at: float) -> dict[str, Any]:
        """What the source held at the last poll (logged at readiness, named at the deadline)."""
        listing = self.last
        files = (listing.files or ()) if listing else ()
        clips = listing.clips if listing else []
        return {
            "day": day,
            "rule": self.rule.rule,
            "where": listing.where if listing else None,
            "exists": bool(listing and listing.files is not None),
            "files": len(files),
            "clips": len(clips),
            "clip_bytes": sum(max(c.size, 0) for c in clips),
            "newest_mtime": max((f.mtime for f in files), default=None),
            "last_change_seen": self.unchanged_since,
            "polls": self.polls,
            "waited_s": round((listing.taken_at if listing else started_at) - started_at, 1),
        }


def describe(snapshot: dict[str, Any]) -> str:
    """``"1,234 clips (5.6 GB), 1,240 files; last change seen 2024-01-16 07:12:05 UTC"``."""
    if not snapshot["exists"]:
        return "directory not seen"
    return (
        f"{snapshot['clips']:,} clips ({_size(snapshot['clip_bytes'])}), "
        f"{snapshot['files']:,} files; last change seen {_clock(snapshot['last_change_seen'])}"
        f", newest file modified {_clock(snapshot['newest_mtime'])}"
    )


def deadline_message(
    snapshot: dict[str, Any], waiting_for: str, deadline_s: float, last_error: str | None = None
) -> str:
    """The red task's message: which day, what was missing, what was there."""
    error = f"; last poll failed: {last_error}" if last_error else ""
    return (
        f"day {snapshot['day']}: {waiting_for or 'no listing of the source day'} after "
        f"{duration(deadline_s)} (rule {snapshot['rule']}, {snapshot['polls']} polls); "
        f"{describe(snapshot)}{error}. Nothing was submitted; clear the task to wait again."
    )


def ready_message(snapshot: dict[str, Any]) -> str:
    return (
        f"Source day {snapshot['day']} ready (rule {snapshot['rule']}) after "
        f"{duration(snapshot['waited_s'])} and {snapshot['polls']} polls: "
        f"{describe(snapshot)} in {snapshot['where']}"
    )


def day_path(source_root: str, day: str) -> str:
    return posixpath.join(source_root.rstrip("/") or "/", day)
