"""Plan one day: list its source clips, drop the ones already done, shard the rest, and
write ``manifest.json`` atomically.

"Done" combines the DB's view (the request's ``done`` map, written by Airflow) with result
lines already on staging (``results/*/shard-*.jsonl``), so a day whose results were never
loaded is not transcribed twice. Per reprocess mode, a clip is skipped when it has:
none: any terminal outcome; failed: an ``ok`` outcome; all: never. A clip that already has
a line under *this* plan's results was handled by this very request and is always skipped,
so re-running the master job mid-day converges instead of redoing work.
Exit codes: 0 planned, 2 bad input (request, source).
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import datetime, timezone
from pathlib import Path

from audio_hpc.contract import (
    Clip,
    ContractError,
    Manifest,
    Request,
    Shard,
    day_dir,
    iter_result_lines,
    write_atomic,
)
from audio_hpc.jobmain import Errors, ExitCode, day_parser, run_job
from audio_hpc.listing import list_local

log = logging.getLogger("audio_hpc.plan")
DEFAULT_PLAN_ID = "adhoc"  # plan id when no request.json exists (a run outside Airflow)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = day_parser(__doc__)
    p.add_argument(
        "--source-root",
        required=True,
        help="directory (local) or path on the source collection (globus) "
        "holding one sub-directory per day",
    )
    p.add_argument(
        "--request",
        default="",
        help="request.json (default <day>/request.json; absent: reprocess none, nothing done)",
    )
    p.add_argument("--shard-size", type=int, default=0, help="override the request's")
    p.add_argument("--source-collection", default="", help="globus: source collection id")
    p.add_argument("--globus-credentials", default=None)
    return p.parse_args(argv)


def load_request(path: Path, date: str) -> Request:
    if not path.exists():
        log.info("no %s: planning with reprocess=none and an empty done-list", path)
        return Request(date=date, plan_id=DEFAULT_PLAN_ID)
    request = Request.from_json(path.read_text(encoding="utf-8"))
    if request.date != date:
        raise ContractError(f"{path} is for {request.date}, not {date}")
    return request


def staged_outcomes(day: Path) -> dict[str, dict[str, str]]:
    """plan_id -> {clip_id: latest status} from the result lines already on staging.

    One file at a time, keeping only (finished_at, status) per clip: a day's lines with
    their transcripts run to tens of megabytes and need not be held at once."""
    out: dict[str, dict[str, str]] = {}
    for plan_dir in sorted((day / "results").glob("*/")):
        latest: dict[str, tuple[str, str]] = {}
        for f in sorted(plan_dir.glob("shard-*.jsonl")):
            for r in iter_result_lines(f.read_text(encoding="utf-8")):
                seen = latest.get(r.clip_id)
                if seen is None or r.finished_at >= seen[0]:  # as latest_per_clip
                    latest[r.clip_id] = (r.finished_at, r.status)
        out[plan_dir.name] = {clip: status for clip, (_, status) in latest.items()}
    return out


def select(clips: list[Clip], request: Request, staged: dict[str, dict[str, str]]) -> list[Clip]:
    """The clips still to transcribe under the request's reprocess mode."""
    this_plan = staged.get(request.plan_id, {})
    keep = []
    for clip in clips:
        if clip.clip_id in this_plan:
            continue
        statuses = {
            plan[clip.clip_id]
            for pid, plan in staged.items()
            if pid != request.plan_id and clip.clip_id in plan
        }
        if clip.clip_id in request.done:
            statuses.add(request.done[clip.clip_id])
        if request.reprocess == "none" and statuses:
            continue
        if request.reprocess == "failed" and "ok" in statuses:
            continue
        keep.append(clip)
    return keep


def shard(clips: list[Clip], size: int) -> list[Shard]:
    if size < 1:
        raise ContractError(f"shard size must be >= 1, got {size}")
    return [
        Shard(index=i, clips=clips[start : start + size])
        for i, start in enumerate(range(0, len(clips), size))
    ]


def list_source(args: argparse.Namespace) -> tuple[str, list[Clip]]:
    """(manifest ``source`` label, the day's clips) from the chosen backend."""
    if args.backend == "local":
        return f"local:{args.source_root}", list_local(args.source_root, args.date)
    from audio_hpc.transfer.globus import list_day, make_client

    if not args.source_collection:
        raise ContractError("globus backend needs --source-collection")
    clips = list_day(
        make_client(args.globus_credentials), args.source_collection, args.source_root, args.date
    )
    return f"globus:{args.source_collection}:{args.source_root}", clips


def plan(args: argparse.Namespace) -> Manifest:
    day = Path(day_dir(args.staging_root, args.date))
    request = load_request(Path(args.request) if args.request else day / "request.json", args.date)
    source, clips = list_source(args)
    todo = select(clips, request, staged_outcomes(day))
    manifest = Manifest(
        date=args.date,
        plan_id=request.plan_id,
        source=source,
        shards=shard(todo, args.shard_size or request.shard_size),
        listed=len(clips),
        skipped=len(clips) - len(todo),
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    for sub in ("audio", "results", "logs"):
        (day / sub).mkdir(parents=True, exist_ok=True)
    write_atomic(day / "manifest.json", manifest.to_json())
    return manifest


#: What the job's failures mean (``jobmain.run_job``).
ERRORS: Errors = [
    ((ContractError, FileNotFoundError, PermissionError, ValueError), ExitCode.BAD_INPUT)
]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_job(f"plan {args.date}", lambda: plan(args).summary(), ERRORS)


if __name__ == "__main__":
    sys.exit(main())
