"""SLURM job states and how the pipeline judges them.

The mapping is total over the states SLURM 22.05-24.x reports (``squeue``/``sacct`` long
names). A state this table does not know (a future SLURM release) maps to ``UNKNOWN``: the
trigger keeps waiting, but treats the poll as *degraded*, so an unknown state that persists
for the whole outage window fails the task with the state named, instead of silently
passing or failing a job that may still be doing useful work.
"""

from __future__ import annotations

import enum
import re


class Verdict(str, enum.Enum):
    WAIT = "wait"
    SUCCESS = "success"
    FAILURE = "failure"
    UNKNOWN = "unknown"


_WAIT = {
    "PENDING",
    "CONFIGURING",
    "RUNNING",
    "COMPLETING",
    "SUSPENDED",
    "REQUEUED",
    "REQUEUE_FED",
    "REQUEUE_HOLD",
    "RESIZING",
    "STOPPED",
    "SIGNALING",
    "STAGE_OUT",
    "RESV_DEL_HOLD",
    "POWER_UP_NODE",
    "UPDATE_DB",
}
_FAILURE = {
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "BOOT_FAIL",
    "DEADLINE",
    "PREEMPTED",
    "REVOKED",
    "SPECIAL_EXIT",
}

# Accounting records these for the attempt that ended, but SLURM may have requeued the job
# under the same id (JobRequeue=1 / --requeue after a node failure, PreemptMode=REQUEUE):
# until the next attempt starts, only the controller knows the job waits again.
MAY_BE_REQUEUED = {"NODE_FAIL", "PREEMPTED"}


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


# What a failure state means for the user, and what to change before clearing the task.
EXPLAIN = {
    "OUT_OF_MEMORY": "OUT_OF_MEMORY: the job used more memory than it asked for (sbatch --mem; "
    "raise resources.<step>.mem in the site config, then clear the task)",
    "TIMEOUT": "TIMEOUT: the job hit its time limit (sbatch --time; raise resources.<step>.time, "
    "then clear the task: a shard resumes after its last finished clip)",
    "NODE_FAIL": "NODE_FAIL: the node running the job stopped answering; clear the task to run "
    "the job elsewhere (a shard resumes after its last finished clip)",
    "PREEMPTED": "PREEMPTED: a higher-priority job took the resources; clear the task to retry",
}


# Without cgroups (TaskPlugin=task/none + JobAcctGatherParams=OverMemoryKill) SLURM kills a
# job over its memory limit but reports it FAILED (signal 9); only its log says why.
_OOM_IN_LOG = re.compile(r"exceeded (job )?memory limit|oom-kill|out of memory", re.IGNORECASE)


def explain(states: list[str], log_text: str = "") -> list[str]:
    """One sentence per distinct failure state in ``states`` that has a known remedy; an
    out-of-memory kill is recognised from the job log too."""
    seen = list(dict.fromkeys(base_state(x) for x in states))
    if "OUT_OF_MEMORY" not in seen and _OOM_IN_LOG.search(log_text):
        seen.append("OUT_OF_MEMORY")
    return [EXPLAIN[s] for s in seen if s in EXPLAIN]
