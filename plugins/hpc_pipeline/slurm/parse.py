"""SLURM's output into rows: ``sacct --parsable2``, ``squeue -O``, ``scontrol show config``,
and the answers of the hook's shell probes. Pure functions over text (golden-file tested)."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from hpc_pipeline.slurm.errors import SlurmError
from hpc_pipeline.slurm.jobs import JobState, SiteLimits, expand_job_id
from hpc_pipeline.slurm.states import base_state

SEP = "\x1f"  # ASCII unit separator: cannot occur in job names or paths we create
SACCT_FIELDS = (
    "JobID",
    "State",
    "ExitCode",
    "NodeList",
    "ElapsedRaw",
    "AllocTRES",
    "Submit",
    "Start",
    "Reason",
    "JobName",
)  # JobName last: the one field that may hold SEP
SQUEUE_FIELDS = (
    "JobArrayID",
    "State",
    "Exit_Code",
    "NodeList",
    "TimeUsed",
    "tres-alloc",
    "StdOut",
    "SubmitTime",
    "StartTime",
    "Reason",
    "Name",
)
_SACCT_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\Z")


def parse_site_limits(text: str) -> SiteLimits:
    """``MaxArraySize``/``MaxJobCount`` from ``scontrol show config`` output."""
    values = dict(re.findall(r"^(MaxArraySize|MaxJobCount)\s*=\s*(\d+)", text, re.MULTILINE))
    if len(values) != 2:
        raise SlurmError(f"scontrol show config lacks MaxArraySize/MaxJobCount: {sorted(values)}")
    return SiteLimits(
        max_array_size=int(values["MaxArraySize"]), max_job_count=int(values["MaxJobCount"])
    )


def _gpus(tres: str) -> int:
    for item in tres.split(","):
        key, _, value = item.partition("=")
        if key in ("gres/gpu", "gpu") and value.isdigit():
            return int(value)
    return 0


def _seconds(used: str) -> int | None:
    """squeue TimeUsed ``[D-][HH:]MM:SS`` -> seconds."""
    days, _, clock = used.rpartition("-")
    try:
        parts = [int(p) for p in clock.split(":")]
    except ValueError:
        return None
    seconds = 0
    for p in parts:
        seconds = seconds * 60 + p
    return seconds + int(days or 0) * 86400


def _timestamp(value: str) -> str | None:
    """sacct's ISO time, or None for "Unknown"/"None" (a job not started yet)."""
    return value if _SACCT_TIME.match(value) else None


def reason_text(value: str) -> str:
    """SLURM's pending reason, "" for none (``None``, ``(null)``, empty)."""
    return "" if value.strip() in ("", "None", "(null)") else value.strip()


def _node(value: str) -> str | None:
    return None if not value or value.startswith("(") or value == "None assigned" else value


def _rows(jid: str, *, state: str, node: str, tres: str, **fields: Any) -> list[JobState]:
    """One ``JobState`` per job / array index that ``jid`` names (``12_[0-3%2]``: four)."""
    return [
        JobState(
            job_id=base if index is None else f"{base}_{index}",
            array_job_id=base,
            array_index=index,
            state=base_state(state),
            node=_node(node),
            alloc_tres=tres,
            gpus=_gpus(tres),
            **fields,
        )
        for base, index in expand_job_id(jid)
    ]


def squeue_exit_code(status: str) -> str:
    """squeue's ``Exit_Code`` in sacct's ``rc:signal`` form: SLURM 22.05 prints the raw wait
    status (256 = exit 1, 9 = SIGKILL), 23.02 and later print ``rc:signal`` already."""
    if ":" in status:
        return status
    code = int(status) if status.isdigit() else 0
    return f"{code >> 8}:{code & 0x7F}"


def _records(text: str, fields: tuple[str, ...]) -> Iterator[list[str]]:
    """The SEP-separated lines of ``text`` holding at least ``fields`` columns."""
    for line in text.splitlines():
        if len(cols := line.split(SEP)) >= len(fields):
            yield cols


def parse_sacct(text: str) -> list[JobState]:
    out = []
    for cols in _records(text, SACCT_FIELDS):
        jid, state, exit_code, node, elapsed, tres, submit, start, reason, name = cols[:9] + [
            SEP.join(cols[9:])
        ]
        out += _rows(
            jid,
            state=state,
            node=node,
            tres=tres,
            name=name,
            exit_code=exit_code,
            elapsed_s=int(elapsed) if elapsed.isdigit() else None,
            source="sacct",
            submit_time=_timestamp(submit),
            start_time=_timestamp(start),
            reason=reason_text(reason),
        )
    return out


def parse_squeue(text: str) -> list[JobState]:
    out = []
    for cols in _records(text, SQUEUE_FIELDS):
        jid, state, status, node, used, tres, stdout, submit, start, reason = (
            c.strip() for c in cols[:10]
        )
        # a pending job's StartTime is only the scheduler's forecast
        started = None if base_state(state) == "PENDING" else _timestamp(start)
        out += _rows(
            jid,
            state=state,
            node=node,
            tres=tres,
            name=cols[10],
            exit_code=squeue_exit_code(status),
            elapsed_s=_seconds(used),
            stdout=None if stdout in ("", "(null)") else stdout,
            source="squeue",
            submit_time=_timestamp(submit),
            start_time=started,
            reason=reason_text(reason),
        )
    return out


@dataclass(frozen=True)
class ProgressProbe:
    """The answer of ``SlurmHook.progress_probe``.

    ``reasons``: SLURM job id (``"12_3"``, or ``"12"``) -> why it is pending; ``counts``:
    ``{file name: (lines, lines holding the marker)}``, None when lines were not counted;
    ``*_rc``: the exit status of each part (None: not run)."""

    reasons: dict[str, str]
    counts: dict[str, tuple[int, int]] | None
    squeue_rc: int | None = None
    count_rc: int | None = None


def parse_progress_probe(text: str) -> ProgressProbe:
    """Read the probe's sections (``@@squeue``, ``@@count``, each closed by ``@@rc N``).

    A squeue line is ``<job id><US><reason>``; a count line is ``<lines> <marked> <path>``.
    A section cut short (no ``@@rc``) keeps what it printed and reports rc None."""
    reasons: dict[str, str] = {}
    counts: dict[str, tuple[int, int]] | None = None
    rcs: dict[str, int] = {}
    section = None
    for line in text.splitlines():
        if line.startswith("@@rc "):
            if section is not None:
                rcs[section] = int(line[5:])
            section = None
        elif line in ("@@squeue", "@@count"):
            section = line[2:]
            if section == "count":
                counts = {}
        elif section == "squeue" and SEP in line:
            job_id, _, reason = line.partition(SEP)
            if reason := reason_text(reason):
                reasons[job_id.strip()] = reason
        elif section == "count" and counts is not None:
            lines, marked, path = line.split(" ", 2)
            counts[posixpath.basename(path)] = (int(lines), int(marked))
    return ProgressProbe(
        reasons=reasons, counts=counts, squeue_rc=rcs.get("squeue"), count_rc=rcs.get("count")
    )


def parse_tree(text: str) -> list[tuple[str, int, float]]:
    """``find -printf '%s %T@ %P\\0'`` output -> (relative path, size, mtime) per file."""
    entries = []
    for record in text.split("\0"):
        size, _, rest = record.partition(" ")
        mtime, _, rel = rest.partition(" ")
        if rel:
            entries.append((rel, int(size), float(mtime)))
    return entries


def parse_free_space(df_output: str) -> tuple[int, int, str] | None:
    """``df -Pk`` -> (bytes free, bytes total, mount point); None when unreadable."""
    rows = df_output.splitlines()[1:]
    cols = rows[0].split() if rows else []
    if len(cols) < 6 or not (cols[1].isdigit() and cols[3].isdigit()):
        return None
    return int(cols[3]) * 1024, int(cols[1]) * 1024, " ".join(cols[5:])
