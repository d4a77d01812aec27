"""Bring the manifest's clips to ``<day>/audio/`` and write ``transfer.json``.

Exit codes: 0 the transfer ran (individual files may have failed: transfer.json says which,
the audio job records them as ``transfer_failed``), 1 the transfer as a whole failed (Globus
task FAILED or still running at the time limit: a retry re-attaches; staging full: the
message names the path), 2 bad input.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
from pathlib import Path

from audio_hpc.contract import ContractError, Manifest, TransferReport, day_dir, write_atomic
from audio_hpc.jobmain import Errors, ExitCode, day_parser, run_job

log = logging.getLogger("audio_hpc.transfer")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = day_parser(__doc__)
    p.add_argument(
        "--globus-credentials",
        default=None,
        help="0600 JSON file {client_id, client_secret}; else GLOBUS_CLIENT_ID/SECRET",
    )
    p.add_argument("--source-collection", default="", help="globus: source collection id")
    p.add_argument("--dest-collection", default="", help="globus: staging collection id")
    p.add_argument(
        "--dest-root",
        default="",
        help="globus: the staging root as the destination collection sees it "
        "(default: --staging-root)",
    )
    p.add_argument("--deadline-hours", type=float, default=12.0)
    p.add_argument("--poll-seconds", type=float, default=30.0)
    p.add_argument(
        "--timeout-seconds",
        type=float,
        default=11 * 3600.0,
        help="stop waiting (job fails, task keeps running, a retry re-attaches)",
    )
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> TransferReport:
    day = Path(day_dir(args.staging_root, args.date))
    manifest = Manifest.from_json((day / "manifest.json").read_text(encoding="utf-8"))
    report = TransferReport(date=args.date, plan_id=manifest.plan_id, backend=args.backend)
    if args.backend == "local":
        from audio_hpc.transfer.local import transfer_all

        report.files = transfer_all(manifest.clips, day / "audio")
    else:
        from audio_hpc.transfer.globus import GlobusTransfer, make_client

        if not (args.source_collection and args.dest_collection):
            raise ContractError("globus backend needs --source-collection and --dest-collection")
        gt = GlobusTransfer(
            make_client(args.globus_credentials),
            args.source_collection,
            args.dest_collection,
            day_dir(args.dest_root or args.staging_root, args.date),
            day,
            deadline=dt.timedelta(hours=args.deadline_hours),
            poll_s=args.poll_seconds,
            timeout_s=args.timeout_seconds,
        )
        state, report.files = gt.run(manifest)
        if state:
            report.submission_id, report.task_id = state.submission_id, state.task_id
    write_atomic(day / "transfer.json", report.to_json())
    return report


#: What the job's failures mean (``jobmain.run_job``); RuntimeError: GlobusTransferError,
#: StagingFull.
ERRORS: Errors = [
    ((ContractError, FileNotFoundError, PermissionError), ExitCode.BAD_INPUT),
    (RuntimeError, ExitCode.FAILED),
]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_job(f"transfer {args.date}", lambda: run(args).summary(), ERRORS)


if __name__ == "__main__":
    sys.exit(main())
