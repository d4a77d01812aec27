"""One ``main()`` for the job entry points: logging, and named exit codes for the errors a job
can end with, so that every step's sbatch log and SLURM ExitCode read the same way."""

from __future__ import annotations

import argparse
import enum
import logging
import sys
from collections.abc import Callable, Sequence


class ExitCode(enum.IntEnum):
    """What a job's exit status means (SLURM shows it as ``ExitCode=<n>:0``)."""

    OK = 0
    FAILED = 1  # the step ran and failed (e.g. the transfer service refused)
    BAD_INPUT = 2  # request, manifest, shard index or plan id is wrong: fix and rerun
    ENGINE_START = 3  # the transcription engine cannot load (model missing, no GPU, ...)
    STAGING_FULL = 4  # the staging filesystem is full; the retry resumes after the last line


def day_parser(doc: str, *, backend: bool = True) -> argparse.ArgumentParser:
    """The arguments every day job takes (``--date``, ``--staging-root``, and the transfer
    ``--backend`` for the plan and transfer jobs); described by the module's first paragraph."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--date", required=True)
    p.add_argument("--staging-root", required=True)
    if backend:
        p.add_argument("--backend", choices=("local", "globus"), required=True)
    return p


Errors = Sequence[tuple[type[BaseException] | tuple[type[BaseException], ...], ExitCode]]


def run_job(name: str, step: Callable[[], str], errors: Errors) -> int:
    """Run ``step()`` and print the summary line it returns; on an error listed in ``errors``
    (first match wins) log it and return its exit code, so each entry point declares what its
    failures mean in one table."""
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    caught = tuple(k for kind, _ in errors for k in (kind if isinstance(kind, tuple) else (kind,)))
    try:
        print(step(), flush=True)
    except caught as exc:
        code = next(code for kind, code in errors if isinstance(exc, kind))
        logging.getLogger(name).error(
            "%s stopped, exit %d (%s): %s", name, code, code.name.lower().replace("_", " "), exc
        )
        return int(code)
    return int(ExitCode.OK)
