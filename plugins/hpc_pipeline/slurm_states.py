"""SLURM job states and how the pipeline judges them.

The mapping is total over the states SLURM 22.05-24.x reports (``squeue``/``sacct`` long
names). A state this table does not know (a future SLURM release) maps to ``UNKNOWN``: the
trigger keeps waiting, but treats the poll as *degraded*, so an unknown state that persists
for the whole outage window fails the task with the state named, instead of silently
passing or failing a job that may still be doing useful work.
"""
from __future__ import annotations

import enum


class Verdict(str, enum.Enum):
    WAIT = "wait"
    SUCCESS = "success"
    FAILURE = "failure"
    UNKNOWN = "unknown"


_WAIT = {
    "PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_FED",
    "REQUEUE_HOLD", "RESIZING", "STOPPED", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD",
    "POWER_UP_NODE", "UPDATE_DB",
}
_FAILURE = {
    "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE",
    "PREEMPTED", "REVOKED", "SPECIAL_EXIT",
}


def base_state(raw: str) -> str:
    """``"CANCELLED by 1001"`` -> ``"CANCELLED"``; ``"completed+"`` -> ``"COMPLETED"``."""
    words = raw.strip().split()
    return words[0].rstrip("+").upper() if words else ""


def verdict(raw_state: str) -> Verdict:
    state = base_state(raw_state)
    if state == "COMPLETED":
        return Verdict.SUCCESS
    if state in _WAIT:
        return Verdict.WAIT
    if state in _FAILURE:
        return Verdict.FAILURE
    return Verdict.UNKNOWN
