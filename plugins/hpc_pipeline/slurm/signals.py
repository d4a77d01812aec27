"""Exit codes that a signal caused, told as such.

SLURM reports a job's end as ``<exit status>:<signal>`` (sacct's ExitCode; squeue's Exit_Code
from 23.02). ``FAILED exit=0:9`` alone does not tell a user that the job was killed, or who
can have done it; :func:`signal_note` says so. A batch script whose child was killed exits with
128 + the signal (bash's convention), so ``137:0`` is read the same way, as likely.
"""

from __future__ import annotations

import signal
from collections.abc import Iterable

# Who sends a signal that ends a job, for the ones a user meets.
_SENDERS = {
    signal.SIGKILL: "sent by the OOM killer, an admin, or `scancel --signal`; SLURM also sends "
    "it KillWait seconds after SIGTERM at a time limit or cancel",
    signal.SIGTERM: "sent by SLURM at a time limit, `scancel`, preemption or a node shutdown, "
    "or by an admin",
    signal.SIGINT: "sent by an admin or `scancel --signal=INT`",
    signal.SIGHUP: "sent by an admin or `scancel --signal=HUP`",
    signal.SIGUSR1: "sent by `scancel --signal` or `sbatch --signal` (a warning before the limit)",
    signal.SIGUSR2: "sent by `scancel --signal` or `sbatch --signal` (a warning before the limit)",
    signal.SIGSEGV: "raised by the program itself: it crashed (invalid memory access)",
    signal.SIGBUS: "raised by the program itself: it crashed (bus error, e.g. a truncated "
    "memory-mapped file)",
    signal.SIGABRT: "raised by the program itself: it aborted (failed assertion, fatal error)",
    signal.SIGFPE: "raised by the program itself: arithmetic fault",
    signal.SIGILL: "raised by the program itself: illegal instruction (a binary built for "
    "another CPU?)",
}


def parse_exit_code(exit_code: str) -> tuple[int, int] | None:
    """``"0:9"`` -> ``(0, 9)``; anything else (``""``, ``"None"``) -> None."""
    status, sep, sig = exit_code.strip().partition(":")
    if not sep or not status.isdigit() or not sig.isdigit():
        return None
    return int(status), int(sig)


def _described(number: int) -> str:
    """``9`` -> ``"signal 9 (SIGKILL) — sent by ..."``."""
    try:
        sig = signal.Signals(number)
    except ValueError:
        return f"signal {number} (unknown) — sent by an admin, `scancel --signal`, or the system"
    sender = _SENDERS.get(sig, "sent by an admin, `scancel --signal`, or the system")
    return f"signal {number} ({sig.name}) — {sender}"


def signal_note(exit_code: str) -> str | None:
    """What ``exit_code`` says about a signal, or None when no signal was involved."""
    parsed = parse_exit_code(exit_code)
    if parsed is None:
        return None
    status, number = parsed
    if number:
        return f"exit={exit_code}: killed by {_described(number)}"
    if 128 < status <= 128 + 64:
        return (
            f"exit={exit_code}: exit status {status} is how a shell reports a command "
            f"killed by {_described(status - 128)} (likely)"
        )
    return None


def signal_notes(exit_codes: Iterable[str]) -> list[str]:
    """One note per distinct exit code that a signal caused, in first-seen order."""
    notes = (signal_note(code) for code in dict.fromkeys(exit_codes))
    return [note for note in notes if note]
