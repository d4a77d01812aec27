"""The verdict on a set of SLURM jobs (an array's indices judged by their newest run), what
a finished watch reports, and what a retry resubmits."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

from hpc_pipeline.slurm.arrays import index_spec
from hpc_pipeline.slurm.jobs import JobState, expand_job_id, latest_runs
from hpc_pipeline.slurm.states import MAY_BE_REQUEUED, Verdict, base_state, verdict

# States of a job whose processes run (or start) on its node.
_ON_A_NODE = frozenset({"RUNNING", "COMPLETING", "CONFIGURING", "STAGE_OUT", "SIGNALING"})

SHOWN_JOBS = 5  # jobs whose log tails a finished task shows; arrays can have thousands


def judge(
    job_ids: list[str],
    jobs: list[JobState],
    array_size: int | None = None,
    job_indices: dict[str, str] | None = None,
) -> tuple[Verdict, list[JobState], str | None]:
    """Overall verdict over the newest job of every (name, index), those jobs, and why the
    poll is degraded (None when every job was understood).

    ``array_size``: indices ``0..array_size-1`` must all be reported before any verdict. Why:
    under load, accounting and the controller can each miss an index for a poll (slurmdbd
    records arrive late), and judging the indices that are there would pass a day whose
    failed shard was not listed yet.

    ``job_indices``: job id -> the indices (an ``--array`` spec, whole-array numbering) that
    job runs; each must be reported *by that job*. Why: after a retry, the first job's failed
    row of an index would otherwise stand in for the retry's row that accounting has not
    listed yet, and fail the retry (seen with 400 indices on the test bed)."""
    missing = sorted(set(job_ids) - {j.array_job_id for j in jobs})
    latest = latest_runs(jobs)
    unknown = [f"{j.job_id}={j.state}" for j in latest if verdict(j.state) is Verdict.UNKNOWN]
    reported = {j.array_index for j in latest}
    unlisted = [i for i in range(array_size or 0) if i not in reported]
    rows = {(j.array_job_id, j.array_index) for j in jobs}
    unlisted += sorted(
        i
        for job, spec in (job_indices or {}).items()
        for _, i in expand_job_id(f"{job}_[{spec}]")
        if i is not None and (job, i) not in rows
    )
    if missing or unknown or unlisted:
        why = (
            f"jobs unknown to SLURM: {missing}"
            if missing
            else f"unknown states: {unknown}"
            if unknown
            else f"array indices not reported yet: {unlisted[:20]}"
        )
        return Verdict.UNKNOWN, latest, why
    verdicts = {verdict(j.state) for j in latest}
    if Verdict.WAIT in verdicts:
        return Verdict.WAIT, latest, None
    return (Verdict.FAILURE if Verdict.FAILURE in verdicts else Verdict.SUCCESS), latest, None


def on_nodes(tasks: list[JobState]) -> dict[str, str | None]:
    """Job id -> node of the jobs that run now (kept by the trigger between polls)."""
    return {j.job_id: j.node for j in tasks if j.state in _ON_A_NODE}


def requeued(before: dict[str, str | None], tasks: list[JobState]) -> list[str]:
    """Jobs that ran at the last poll (``before``: ``on_nodes``) and wait again now: SLURM
    requeued them (after a node failure, a preemption, ``scontrol requeue``)."""
    return [
        j.job_id
        for j in tasks
        if j.job_id in before
        and j.state not in _ON_A_NODE
        and verdict(j.state) is Verdict.WAIT
        and not j.prior_state
    ]


def with_lost_attempts(tasks: list[JobState], attempts: list[JobState]) -> list[JobState]:
    """``tasks`` whose job has an ended attempt in ``attempts`` (``sacct -D``, oldest first)
    in a state SLURM requeues after, with that attempt as ``prior_state`` / ``prior_node``
    (accounting of 24.11 lists the new attempt at once, so ``reconcile`` cannot see it)."""
    ended = {a.job_id: a for a in attempts if a.state in MAY_BE_REQUEUED}
    return [
        replace(j, prior_state=ended[j.job_id].state, prior_node=ended[j.job_id].node)
        if j.job_id in ended and not j.prior_state and j.state != ended[j.job_id].state
        else j
        for j in tasks
    ]


def node_loss_notes(tasks: list[JobState], limit: int = 10) -> list[str]:
    """One sentence per node lost under jobs: ``"node vm failed under job 12_4 (NODE_FAIL)"``
    for jobs that ended so, ``"...; SLURM requeued it (now PENDING)"`` for jobs SLURM runs
    again (``prior_state``), in node order."""
    lost: dict[tuple[str, str], list[str]] = {}
    for j in tasks:
        if base_state(j.state) == "NODE_FAIL":
            lost.setdefault((j.node or "(unknown)", ""), []).append(j.job_id)
        elif j.prior_state == "NODE_FAIL":
            lost.setdefault((j.prior_node or "(unknown)", j.state), []).append(j.job_id)
    notes = []
    for (node, now), ids in sorted(lost.items()):
        more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
        noun = "job" if len(ids) == 1 else "jobs"
        note = f"node {node} failed under {noun} {', '.join(ids[:limit])}{more} (NODE_FAIL)"
        if now:
            pronoun = "it" if len(ids) == 1 else "them"
            note += f"; SLURM requeued {pronoun} (now {now})"
        notes.append(note)
    return notes


def failure_message(tasks: list[JobState], limit: int = 20) -> str:
    """``"12_1 FAILED exit=3:0 node=vm; ..."`` for the failed indices (the first ``limit``),
    then which nodes failed under them (``node_loss_notes``)."""
    failed = [
        f"{j.job_id} {j.state} exit={j.exit_code} node={j.node or '-'}"
        for j in tasks
        if verdict(j.state) is Verdict.FAILURE
    ]
    more = f"; ... and {len(failed) - limit} more" if len(failed) > limit else ""
    lost = "".join(f"; {note}" for note in node_loss_notes(tasks))
    return "; ".join(failed[:limit]) + more + lost


def event_payload(
    job_ids: list[str],
    status: str,
    message: str,
    tasks: list[JobState],
    log_path: str | None = None,
) -> dict[str, Any]:
    """The outcome in a size that does not grow with the array, except by its failed
    indices: Airflow stores the event in its metadata DB (a row per index was 113 KB at 400
    indices). A retry needs nothing from it: it asks SLURM what failed (``array_plan``).

    ``{"status": "success" | "failed" | "stuck" | "error", "job_ids": [...], "message": str,
    "log_path": the --output pattern (or None), "counts": {state: indices (or jobs) in it,
    newest job per index}, "failed_indices": [every failed array index, whole-array
    numbering], "shown": [JobState dicts of the first SHOWN_JOBS failed indices (all jobs
    when none failed): the task shows their log tails]}``"""
    failed = [j for j in tasks if verdict(j.state) is Verdict.FAILURE]
    return {
        "status": status,
        "job_ids": job_ids,
        "message": message,
        "log_path": log_path,
        "counts": dict(sorted(Counter(j.state for j in tasks).items())),
        "failed_indices": sorted(j.array_index for j in failed if j.array_index is not None),
        "shown": [j.to_dict() for j in (failed if status == "failed" else tasks)[:SHOWN_JOBS]],
    }


def array_plan(existing: list[JobState], array_size: int) -> tuple[list[str], list[int]]:
    """(job ids to reattach to, indices to (re)submit) for an array: judged per index by the
    newest job that ran it; missing and failed indices are (re)submitted, the rest watched."""
    latest = {
        j.array_index: j for j in latest_runs(j for j in existing if j.array_index is not None)
    }
    todo = [
        i
        for i in range(array_size)
        if i not in latest or verdict(latest[i].state) is Verdict.FAILURE
    ]
    watch = sorted(
        {latest[i].array_job_id for i in range(array_size) if i in latest and i not in todo},
        key=int,
    )
    return watch, todo


def plan(existing: list[JobState], array_size: int | None) -> tuple[list[str], str | None, bool]:
    """What to watch and what to submit, given the jobs that already carry our name.

    Returns (job ids to reattach to, ``--array`` spec or None, whether to submit).
    Non-array: the newest job is reattached unless it failed. Array: see ``array_plan``.
    """
    if array_size is None:
        jobs = [j for j in existing if j.array_index is None]
        if jobs and verdict(jobs[0].state) is not Verdict.FAILURE:
            return [jobs[0].array_job_id], None, False
        return [], None, True
    watch, todo = array_plan(existing, array_size)
    return watch, (index_spec(todo) if todo else None), bool(todo)
