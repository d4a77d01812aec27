"""Transcribe one shard of a day's manifest (one SLURM array task).

Appends one ClipResult line per clip to ``results/<plan_id>/shard-XXXX.jsonl`` the moment
it is known (fsync'd), so a killed shard resumes where it stopped; per-clip failures become
failed lines, never a failed shard. Exit codes: 0 shard ran (even if clips failed), 2 bad
input (manifest, shard index, plan id), 3 the engine cannot start (model missing, ...),
4 staging is full (the message names the file; the retry resumes after the last line).
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from audio_hpc.contract import (
    ClipResult,
    ContractError,
    Manifest,
    ShardSummary,
    StagingFull,
    TransferReport,
    day_dir,
    iter_result_lines,
    latest_per_clip,
    results_dir,
    shard_results_name,
    shard_summary_name,
    write_atomic,
)
from audio_hpc.decode import DecodeError, DecodeJob, DecodePool
from audio_hpc.engines.base import (
    DecodedClip,
    EngineOptions,
    NoSpeech,
    Transcript,
    TranscriptionEngine,
    load_engine,
)
from audio_hpc.jobmain import Errors, ExitCode, day_parser, run_job

log = logging.getLogger("audio_hpc.process")


class EngineStartError(RuntimeError):
    """The transcription engine could not be loaded: the shard cannot run at all."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def slurm_identity() -> dict[str, Any]:
    """Job id (``<array job>_<index>`` for array tasks), array index and node from SLURM."""
    env = os.environ
    index = int(env.get("SLURM_ARRAY_TASK_ID", "-1"))
    job = (
        f"{env['SLURM_ARRAY_JOB_ID']}_{index}"
        if "SLURM_ARRAY_JOB_ID" in env
        else env.get("SLURM_JOB_ID", "")
    )
    return {"job_id": job, "array_index": index, "node": env.get("SLURMD_NODENAME", "")}


class Ledger:
    """The shard's append-only results file. A line torn by a kill is cut off on open so the
    next append starts on a fresh line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        if text and not text.endswith("\n"):
            keep = text[: text.rfind("\n") + 1]
            log.warning("dropping a torn last line in %s", path.name)
            with open(path, "r+", encoding="utf-8") as fh:
                fh.truncate(len(keep.encode("utf-8")))
            text = keep
        self.results: list[ClipResult] = list(iter_result_lines(text))
        self._fh: IO[str] = open(path, "a", encoding="utf-8")

    def append(self, result: ClipResult) -> None:
        """Append one line durably. A failed write (disk full) is cut back off, so the file
        never keeps half a line; a full disk raises StagingFull naming the file."""
        size = os.fstat(self._fh.fileno()).st_size  # every earlier line is flushed
        try:
            self._fh.write(result.to_line())
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except OSError as exc:
            self._fh = self._reopen_at(size)
            StagingFull.check(exc, self.path)
            raise
        self.results.append(result)

    def _reopen_at(self, size: int) -> IO[str]:
        """Drop what a failed write left past ``size`` (truncating needs no free space) and
        reopen; the old handle's unflushed buffer is discarded with it."""
        try:
            self._fh.close()
        except OSError:
            pass  # the failed bytes were still buffered: closing tries (and fails) to flush
        os.truncate(self.path, size)
        return open(self.path, "a", encoding="utf-8")

    def close(self) -> None:
        self._fh.close()


class Progress:
    """Counts done clips and audio; a daemon thread logs done/total and rates every
    ``interval`` seconds so a stuck shard is visible in the SLURM log."""

    def __init__(self, total: int, interval: float) -> None:
        self.total, self.interval = total, interval
        self.done = 0
        self.audio_s = 0.0
        self.start = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Progress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.report()

    def add(self, audio_s: float) -> None:
        self.done += 1
        self.audio_s += audio_s

    def report(self) -> None:
        wall = max(time.monotonic() - self.start, 1e-9)
        log.info(
            "progress %d/%d clips, %.2f clips/min, %.1f audio s / wall s",
            self.done,
            self.total,
            60 * self.done / wall,
            self.audio_s / wall,
        )

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.report()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = day_parser(__doc__, backend=False)
    p.add_argument("--shard", type=int, required=True)
    p.add_argument("--plan-id", default="", help="refuse to run on a manifest of another plan")
    p.add_argument("--models-dir", required=True)
    p.add_argument("--model", default="faster-whisper-large-v3")
    p.add_argument("--engine", default="whisperx", choices=("whisperx", "torch"))
    p.add_argument("--language", default="en", help='"" detects the language per clip')
    p.add_argument("--compute-type", default="int8")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument(
        "--beam-size",
        type=int,
        default=None,
        help="beam width, 1 = greedy (default: WhisperX 5, torch 1)",
    )
    p.add_argument("--max-clip-seconds", type=float, default=3 * 3600)
    p.add_argument(
        "--workers",
        type=int,
        default=max(1, 3 * len(os.sched_getaffinity(0)) // 4),
        help="decode workers: processes with PyAV, else FFmpeg threads (default: "
        "3/4 of the CPUs granted, the rest for the engine's threads; 12 of 16 "
        "fed an H200 best, bench/results/h200_run_k_shard_e2e.json)",
    )
    p.add_argument("--progress-interval", type=float, default=30.0)
    return p.parse_args(argv)


class ShardRun:
    """Everything one shard run needs; ``run`` returns the summary it wrote."""

    def __init__(self, args: argparse.Namespace, manifest: Manifest) -> None:
        self.args = args
        self.manifest = manifest
        self.day = Path(day_dir(args.staging_root, args.date))
        self.ident = slurm_identity()
        self.shard = next(s for s in manifest.shards if s.index == args.shard)
        out = Path(results_dir(args.staging_root, args.date, manifest.plan_id))
        self.ledger = Ledger(out / shard_results_name(args.shard))
        self.summary_path = out / shard_summary_name(args.shard)
        self.engine_name = args.engine

    def _line(self, clip_id: str, **fields: Any) -> ClipResult:
        return ClipResult(
            clip_id=clip_id,
            date=self.args.date,
            engine=self.engine_name,
            model=self.args.model,
            finished_at=_now(),
            **self.ident,
            **fields,
        )

    def _failed(self, clip_id: str, kind: str, error: str, duration_s: float = 0.0) -> None:
        log.warning("clip %s failed (%s): %s", clip_id, kind, error)
        self.ledger.append(
            self._line(
                clip_id,
                status="failed",
                error_kind=kind,
                error=error,
                duration_s=round(duration_s, 3),
            )
        )

    def _transfer_failures(self) -> dict[str, str]:
        """clip_id -> reason for clips the transfer job reported failed (or never staged)."""
        path = self.day / "transfer.json"
        failed = (
            {
                c: o.error or "transfer failed"
                for c, o in TransferReport.from_json(path.read_text()).failed().items()
            }
            if path.exists()
            else {}
        )
        for clip in self.shard.clips:
            if clip.clip_id not in failed and not (self.day / "audio" / clip.name).is_file():
                failed[clip.clip_id] = f"audio/{clip.name} is not on staging"
        return failed

    def _decoded(self, pool: DecodePool, progress: Progress) -> Iterator[DecodedClip]:
        """Feed the engine decoded clips; decode failures are recorded here, on the way."""
        for job, outcome in pool:
            if isinstance(outcome, DecodeError):
                self._failed(job.clip_id, outcome.kind, str(outcome))
                progress.add(0.0)
            else:
                yield outcome

    def _record(self, clip: DecodedClip, outcome: Transcript | Exception) -> None:
        if isinstance(outcome, NoSpeech):
            self._failed(clip.clip_id, "silent", str(outcome), clip.duration_s)
        elif isinstance(outcome, Exception):
            self._failed(
                clip.clip_id,
                "engine_error",
                f"{type(outcome).__name__}: {outcome}",
                clip.duration_s,
            )
        else:
            self.ledger.append(
                self._line(
                    clip.clip_id,
                    status="ok",
                    language=outcome.language,
                    duration_s=round(clip.duration_s, 3),
                    text=outcome.text,
                    segments=outcome.segments,
                    alignment=outcome.alignment,
                    timings={
                        "decode_s": round(clip.decode_s, 3),
                        **{k: round(v, 3) for k, v in outcome.timings.items()},
                    },
                )
            )

    def _load_engine(self) -> TranscriptionEngine:
        """Load the model once for the shard (decoding has already started meanwhile)."""
        a = self.args
        try:
            return load_engine(
                a.engine,
                EngineOptions(
                    models_dir=a.models_dir,
                    model_name=a.model,
                    language=a.language,
                    compute_type=a.compute_type,
                    batch_size=a.batch_size,
                    device=a.device,
                    beam_size=a.beam_size,
                ),
            )
        except Exception as exc:
            raise EngineStartError(
                f"engine {a.engine} did not start: {type(exc).__name__}: {exc}"
            ) from exc

    def run(self) -> ShardSummary:
        start = time.monotonic()
        done = {r.clip_id for r in self.ledger.results}
        todo = [c for c in self.shard.clips if c.clip_id not in done]
        log.info(
            "shard %d of plan %s: %d clips, %d already done, %d to do",
            self.args.shard,
            self.manifest.plan_id,
            len(self.shard.clips),
            len(self.shard.clips) - len(todo),
            len(todo),
        )
        transfer_failed = self._transfer_failures()
        jobs = [
            DecodeJob(c.clip_id, self.day / "audio" / c.name)
            for c in todo
            if c.clip_id not in transfer_failed
        ]
        device = "none"
        with Progress(len(todo), self.args.progress_interval) as progress:
            for clip in todo:
                if clip.clip_id in transfer_failed:
                    self._failed(clip.clip_id, "transfer_failed", transfer_failed[clip.clip_id])
                    progress.add(0.0)
            if jobs:
                with DecodePool(jobs, self.args.workers, self.args.max_clip_seconds) as pool:
                    engine = self._load_engine()
                    device = engine.device_name
                    log.info(
                        "engine %s ready on %s after %.1f s",
                        engine.name,
                        device,
                        time.monotonic() - start,
                    )
                    for decoded, outcome in engine.transcribe_stream(self._decoded(pool, progress)):
                        self._record(decoded, outcome)
                        progress.add(decoded.duration_s)
            audio_s = progress.audio_s
        self.ledger.close()
        return self._summary(start, audio_s, len(self.shard.clips) - len(todo), device)

    def _summary(self, start: float, audio_s: float, resumed: int, device: str) -> ShardSummary:
        ids = {c.clip_id for c in self.shard.clips}
        final = [r for r in latest_per_clip(self.ledger.results).values() if r.clip_id in ids]
        reasons = collections.Counter(r.error_kind for r in final if r.status == "failed")
        wall = time.monotonic() - start
        summary = ShardSummary(
            date=self.args.date,
            plan_id=self.manifest.plan_id,
            shard=self.args.shard,
            clips=len(ids),
            ok=sum(r.status == "ok" for r in final),
            failed=sum(reasons.values()),
            failed_by_reason=dict(reasons),
            skipped_already_done=resumed,
            audio_s=round(audio_s, 3),
            wall_s=round(wall, 3),
            rtf=round(audio_s / wall, 3) if wall else 0.0,
            engine=self.engine_name,
            model=self.args.model,
            device=device,
            **self.ident,
        )
        write_atomic(self.summary_path, summary.to_json())
        return summary


def load_manifest(args: argparse.Namespace) -> Manifest:
    """The day's manifest, checked against --plan-id and --shard; ContractError otherwise."""
    path = Path(day_dir(args.staging_root, args.date)) / "manifest.json"
    if not path.is_file():
        raise ContractError(f"no manifest at {path}: run the master job first")
    manifest = Manifest.from_json(path.read_text(encoding="utf-8"))
    if args.plan_id and manifest.plan_id != args.plan_id:
        raise ContractError(f"{path} belongs to plan {manifest.plan_id!r}, not {args.plan_id!r}")
    if args.shard not in {s.index for s in manifest.shards}:
        raise ContractError(f"shard {args.shard} is not in {path} ({len(manifest.shards)} shards)")
    return manifest


#: What the job's failures mean (``jobmain.run_job``).
ERRORS: Errors = [
    ((ContractError, ValueError), ExitCode.BAD_INPUT),
    (EngineStartError, ExitCode.ENGINE_START),
    (StagingFull, ExitCode.STAGING_FULL),
]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_job(
        f"shard {args.shard}", lambda: ShardRun(args, load_manifest(args)).run().summary(), ERRORS
    )


if __name__ == "__main__":
    sys.exit(main())
