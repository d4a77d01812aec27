"""On-disk formats shared by the HPC jobs and the Airflow side (standard library only).

Remote layout of one day under ``$STAGING_ROOT/<date>/``::

    request.json                 what Airflow asks for (done-list, reprocess mode, shard size)
    manifest.json                the master job's plan (clips split into shards)
    transfer.json                per-clip outcome of the transfer job
    audio/<name>                 staged clips
    results/<plan_id>/shard-XXXX.jsonl          one ClipResult line per clip, appended as done
    results/<plan_id>/shard-XXXX.summary.json   ShardSummary once a shard ends
    logs/                        SLURM stdout/stderr of every job of the day

Every document carries ``schema_version``; readers reject versions they do not know with a
clear message instead of guessing.
"""

from __future__ import annotations

import collections
import errno
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import MISSING, asdict, dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import IO, Any, Literal, cast

SCHEMA_VERSION = 1

ClipStatus = Literal["ok", "failed"]
Reprocess = Literal["none", "failed", "all"]
REPROCESS_MODES: tuple[str, ...] = ("none", "failed", "all")

# Reasons a clip can fail with (error_kind). Stable strings: they are grouped on in SQL.
ERROR_KINDS: tuple[str, ...] = (
    "transfer_failed",  # the clip never reached staging intact
    "empty",  # zero bytes
    "not_audio",  # FFmpeg found no decodable audio stream
    "corrupt",  # FFmpeg failed while decoding
    "silent",  # decoded, but the VAD found no speech
    "too_long",  # longer than the configured maximum
    "engine_error",  # the transcription engine raised
)

AUDIO_EXTENSIONS: tuple[str, ...] = (
    ".mp4",
    ".m4a",
    ".mov",
    ".mkv",
    ".webm",
    ".wav",
    ".mp3",
    ".ogg",
    ".flac",
    ".aac",
    ".opus",
)


# A write that failed for lack of space (disk full, quota): the day's fault, never a clip's.
NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class StagingFull(RuntimeError):
    """Staging took no more bytes; the message names the path that could not be written."""

    @classmethod
    def check(cls, exc: OSError, path: str | Path) -> None:
        """Raise StagingFull for a no-space ``exc`` while writing ``path``; else nothing."""
        if exc.errno in NO_SPACE_ERRNOS:
            raise cls(
                f"staging is full: cannot write {path}: {exc.strerror}; free space "
                "there and retry (finished work is kept)"
            ) from exc


class ContractError(ValueError):
    """A document does not follow this contract (unknown version, missing field)."""


def day_dir(staging_root: str, date: str) -> str:
    return f"{staging_root.rstrip('/')}/{date}"


def results_dir(staging_root: str, date: str, plan_id: str) -> str:
    return f"{day_dir(staging_root, date)}/results/{plan_id}"


def shard_results_name(shard: int) -> str:
    return f"shard-{shard:04d}.jsonl"


def shard_summary_name(shard: int) -> str:
    return f"shard-{shard:04d}.summary.json"


def _check_version(doc: dict[str, Any], kind: str) -> None:
    version = doc.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ContractError(
            f"{kind}: schema_version {version!r} is not supported (this code reads "
            f"version {SCHEMA_VERSION}); deploy matching code on both sides"
        )


@cache
def _field_names(cls: type) -> tuple[frozenset[str], tuple[str, ...]]:
    """(every field, the required ones) of a dataclass; cached: a big day's result lines
    are parsed tens of thousands at a time."""
    return (
        frozenset(f.name for f in fields(cls)),
        tuple(f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING),
    )


def _from_dict(cls: type, doc: dict[str, Any], kind: str) -> Any:
    names, required = _field_names(cls)
    missing = [name for name in required if name not in doc]
    if missing:
        raise ContractError(f"{kind}: missing field(s) {', '.join(missing)}")
    return cls(**{k: v for k, v in doc.items() if k in names})


def _document(cls: type, text: str, kind: str) -> Any:
    """``text`` as a ``cls``: JSON in a schema version this code reads, the fields it knows."""
    doc = json.loads(text)
    _check_version(doc, kind)
    return _from_dict(cls, doc, kind)


class _JsonFile:
    """A contract file written for people too: one field a line, keys sorted."""

    def to_json(self) -> str:
        return json.dumps(asdict(cast(Any, self)), indent=1, sort_keys=True)


@dataclass
class Clip:
    """One source clip. ``clip_id`` is ``<date>/<relative path>``: unique across days."""

    clip_id: str
    name: str  # file name on staging (``audio/<name>``), unique within the day
    source_path: str  # path on the source collection/directory
    size: int


@dataclass
class Shard:
    index: int
    clips: list[Clip]


@dataclass
class Request:
    """What Airflow asks the master job to plan (written by Airflow before submitting)."""

    date: str
    plan_id: str
    reprocess: str = "none"
    shard_size: int = 50
    done: dict[str, str] = field(default_factory=dict)  # clip_id -> status already in the DB
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Request:
        req = _document(cls, text, "request.json")
        if req.reprocess not in REPROCESS_MODES:
            raise ContractError(
                f"request.json: reprocess must be one of {REPROCESS_MODES}, got {req.reprocess!r}"
            )
        return req


@dataclass
class Manifest(_JsonFile):
    date: str
    plan_id: str
    source: str
    shards: list[Shard]
    listed: int = 0  # clips found at the source
    skipped: int = 0  # clips left out because they are already done
    created_at: str = ""
    schema_version: int = SCHEMA_VERSION

    @property
    def clips(self) -> list[Clip]:
        return [c for s in self.shards for c in s.clips]

    def summary(self) -> str:
        """The master job's one line."""
        return (
            f"plan {self.date} plan_id={self.plan_id} listed={self.listed} "
            f"skipped={self.skipped} to_process={len(self.clips)} shards={len(self.shards)}"
        )

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        m = _document(cls, text, "manifest.json")
        m.shards = [
            Shard(
                index=s["index"],
                clips=[_from_dict(Clip, c, "manifest.json clip") for c in s["clips"]],
            )
            for s in m.shards
        ]
        return m


@dataclass
class TransferOutcome:
    clip_id: str
    name: str
    status: Literal[
        "transferred", "skipped", "failed"
    ]  # skipped: already on staging, same checksum
    checksum: str = ""  # sha256 of the staged file
    error: str = ""


@dataclass
class TransferReport(_JsonFile):
    date: str
    plan_id: str
    backend: str
    task_id: str = ""  # Globus task id (or "" for the local backend)
    submission_id: str = ""
    files: list[TransferOutcome] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    def failed(self) -> dict[str, TransferOutcome]:
        return {f.clip_id: f for f in self.files if f.status == "failed"}

    def summary(self) -> str:
        """The transfer job's one line."""
        n = collections.Counter(f.status for f in self.files)
        return (
            f"transfer {self.date} plan={self.plan_id} backend={self.backend} "
            f"files={len(self.files)} transferred={n['transferred']} skipped={n['skipped']} "
            f"failed={n['failed']}"
        )

    @classmethod
    def from_json(cls, text: str) -> TransferReport:
        r = _document(cls, text, "transfer.json")
        r.files = [_from_dict(TransferOutcome, f, "transfer.json file") for f in r.files]
        return r


@dataclass
class Segment:
    start: float
    end: float
    text: str
    words: list[dict[str, Any]] = field(default_factory=list)  # {word, start, end, score}


@dataclass
class ClipResult:
    """One line of ``results/<plan_id>/shard-XXXX.jsonl``: the outcome for one clip."""

    clip_id: str
    date: str
    status: str  # ClipStatus
    engine: str = ""
    model: str = ""
    language: str = ""
    duration_s: float = 0.0
    text: str = ""
    segments: list[dict[str, Any]] = field(default_factory=list)  # Segment dicts
    error_kind: str = ""  # one of ERROR_KINDS when failed
    error: str = ""
    alignment: str = ""  # "aligned" or "skipped: <reason>"
    timings: dict[str, float] = field(default_factory=dict)  # decode_s, transcribe_s, align_s
    job_id: str = ""
    array_index: int = -1
    node: str = ""
    finished_at: str = ""  # ISO-8601 UTC
    schema_version: int = SCHEMA_VERSION

    def to_line(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def from_line(cls, line: str) -> ClipResult:
        doc = json.loads(line)
        _check_version(doc, "result line")
        r = _from_dict(cls, doc, "result line")
        if r.status not in ("ok", "failed"):
            raise ContractError(f"result line: status must be ok or failed, got {r.status!r}")
        return r


@dataclass
class ShardSummary(_JsonFile):
    date: str
    plan_id: str
    shard: int
    clips: int
    ok: int
    failed: int
    failed_by_reason: dict[str, int]
    skipped_already_done: int
    audio_s: float
    wall_s: float
    rtf: float  # audio seconds per wall second
    engine: str
    model: str
    device: str  # GPU name or "cpu"
    job_id: str = ""
    array_index: int = -1
    node: str = ""
    schema_version: int = SCHEMA_VERSION

    def summary(self) -> str:
        """The audio job's one line."""
        return (
            f"shard {self.shard} done: {self.ok} ok, {self.failed} failed "
            f"{self.failed_by_reason}, {self.audio_s:.1f} audio s in {self.wall_s:.1f} s "
            f"(RTF {self.rtf:.2f}) on {self.device}"
        )

    @classmethod
    def from_json(cls, text: str) -> ShardSummary:
        return _document(cls, text, "shard summary")


# How a failed clip's result line reads on disk (``ClipResult.to_line``: sorted keys, json's
# separators; quotes inside values are escaped, so only the top-level key matches): lets the
# Airflow side count failures in running shards' files with one remote ``awk``, unparsed.
FAILED_LINE_MARK = json.dumps({"status": "failed"})[1:-1]


def iter_result_lines(text: str) -> Iterator[ClipResult]:
    """Parse a results file; a torn last line (a shard killed mid-write) is ignored."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            yield ClipResult.from_line(line)
        except json.JSONDecodeError as exc:
            if i == len(lines) - 1:
                return
            raise ContractError(f"results: line {i + 1} is not valid JSON") from exc


def latest_per_clip(results: list[ClipResult]) -> dict[str, ClipResult]:
    """The newest outcome per clip (by finished_at): what re-runs converge to."""
    best: dict[str, ClipResult] = {}
    for r in results:
        cur = best.get(r.clip_id)
        if cur is None or r.finished_at >= cur.finished_at:
            best[r.clip_id] = r
    return best


def process_umask() -> int:
    """The umask, read from /proc (``os.umask`` can only be read by changing it, which races
    other threads creating files); 0o022 where /proc does not say."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


@contextmanager
def atomic_file(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """A temp file beside ``path``, fsync'd and renamed over it when the block ends well
    (removed when it does not), so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~process_umask())  # mkstemp's 0600, widened as the umask allows
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        StagingFull.check(exc, path)
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` so readers never see half a document."""
    with atomic_file(path) as fh:
        fh.write(text)
