"""The day-level steps of the daily DAG that are not SLURM jobs: which day, what to ask the
master job for, what it planned, recording results, and staging cleanup.

Each function takes hooks and plain values so the DAG file only composes them.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import json
import logging
import posixpath
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from airflow.providers.common.compat.sdk import AirflowFailException, AirflowSkipException
from airflow.sdk import BaseHook
from airflow.sdk.api.client import ServerResponseError
from airflow.sdk.exceptions import AirflowRuntimeError

from audio_hpc.contract import (
    REPROCESS_MODES,
    ClipResult,
    Manifest,
    Request,
    day_dir,
    iter_result_lines,
)
from hpc_pipeline.config import PipelineConfig
from hpc_pipeline.hooks.results_db import DayLoad, JobRecord, ResultsDbHook
from hpc_pipeline.hooks.slurm import SlurmHook

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DayContext:
    """Everything later tasks need to know about the run's day (pushed to XCom)."""

    day: str
    plan_id: str
    reprocess: str
    run_id: str
    staging_root: str  # absolute, on the cluster
    day_dir: str
    release_root: str  # absolute, on the cluster: <remote_root>/releases

    def to_xcom(self) -> dict[str, str]:
        return asdict(self)


def parse_day(value: str | None, logical_date: dt.datetime | None, today: dt.date) -> str:
    """The day to process: the ``date`` param, else the day before the run's logical date.

    Raises AirflowFailException (no retries: retrying cannot fix a bad parameter).
    """
    if value:
        try:
            day = dt.date.fromisoformat(value.strip())
        except ValueError:
            raise AirflowFailException(
                f"param 'date' must be a calendar date YYYY-MM-DD, got {value!r}"
            ) from None
        if len(value.strip()) != 10:
            raise AirflowFailException(f"param 'date' must be written YYYY-MM-DD, got {value!r}")
    elif logical_date is not None:
        # A @daily run fires at the start of D+1 with logical date D+1 (cron trigger timetable).
        day = logical_date.date() - dt.timedelta(days=1)
    else:
        raise AirflowFailException("no 'date' param and no logical date: cannot tell which day")
    if day > today:
        raise AirflowFailException(f"date {day} is in the future (today is {today})")
    return day.isoformat()


def resolve_day(
    ssh: SlurmHook,
    config: PipelineConfig,
    *,
    date_param: str | None,
    reprocess: str,
    logical_date: dt.datetime | None,
    run_id: str,
) -> DayContext:
    if reprocess not in REPROCESS_MODES:
        raise AirflowFailException(
            f"param 'reprocess' must be one of {REPROCESS_MODES}, got {reprocess!r}"
        )
    day = parse_day(date_param, logical_date, dt.datetime.now(dt.timezone.utc).date())
    staging = ssh.resolve(config.staging_root)
    return DayContext(
        day=day,
        plan_id=hashlib.sha1(run_id.encode()).hexdigest()[:10],
        reprocess=reprocess,
        run_id=run_id,
        staging_root=staging,
        day_dir=day_dir(staging, day),
        release_root=posixpath.join(ssh.resolve(config.remote_root), "releases"),
    )


def claim_day(db: ResultsDbHook, ctx: DayContext, run_active: Callable[[str], bool]) -> None:
    """Make this run the only one working on its day, or refuse (no retries: waiting is the
    user's call). Two runs of a day at once would overwrite each other's manifest and
    transcribe the same clips twice; a claim held by a run that has ended is taken over."""
    holder = db.claim_day(ctx.day, ctx.run_id, run_active)
    if holder is not None:
        raise AirflowFailException(
            f"day {ctx.day} is being processed by run {holder!r}, which is still running; "
            "this run stops before touching staging (no second manifest, no clip transcribed "
            "twice). Trigger the day again once that run has ended."
        )


def run_is_active(ti: Any, run_id: str) -> bool:
    """Whether run ``run_id`` of the task's DAG is still queued or running, by Airflow's
    own record (a run deleted from Airflow is not)."""
    try:
        state = ti.get_dagrun_state(ti.dag_id, run_id)
    except AirflowRuntimeError:  # under the supervisor: the API's "not found"
        return False
    except ServerResponseError as exc:  # in-process (dag.test)
        if exc.response.status_code == 404:
            return False
        raise
    return state in ("queued", "running")


def write_request(
    ssh: SlurmHook, db: ResultsDbHook, config: PipelineConfig, ctx: DayContext
) -> dict[str, int]:
    """Hand the master job the done-list from the DB and the reprocess mode, in a day dir
    only the submit user (and ``staging_group``) can read."""
    done = {} if ctx.reprocess == "all" else db.done_clips(ctx.day)
    request = Request(
        date=ctx.day,
        plan_id=ctx.plan_id,
        reprocess=ctx.reprocess,
        shard_size=config.shard_size,
        done=done,
    )
    for folder in (
        ctx.staging_root,
        ctx.day_dir,
        *(posixpath.join(ctx.day_dir, sub) for sub in ("logs", "results", "audio")),
    ):
        ssh.makedirs(folder, mode=config.staging_dir_mode, group=config.staging_group)
    ssh.write_text(
        posixpath.join(ctx.day_dir, "request.json"),
        request.to_json(),
        mode=config.staging_file_mode,
    )
    counts = {
        "done_ok": sum(s == "ok" for s in done.values()),
        "done_failed": sum(s == "failed" for s in done.values()),
    }
    log.info("Request for %s (reprocess=%s): %s", ctx.day, ctx.reprocess, counts)
    return counts


def write_globus_credentials(ssh: SlurmHook, config: PipelineConfig, ctx: DayContext) -> str:
    """Put the Globus client id/secret (Airflow connection ``globus_conn_id``: login =
    client id, password = secret) where the jobs read it: a 0600 file in a 0700 dir.

    The secret never travels on a command line or in the job environment (both are visible
    to other users through ``ps`` and ``scontrol show job``).
    """
    folder = posixpath.join(posixpath.dirname(ctx.release_root), "secrets")
    path = posixpath.join(folder, "globus.json")
    conn = BaseHook.get_connection(config.globus_conn_id)
    ssh.makedirs(folder, mode=0o700)
    ssh.write_text(path, "", mode=0o600)  # restrict before the secret is written
    ssh.write_text(
        path, json.dumps({"client_id": conn.login, "client_secret": conn.password}), mode=0o600
    )
    return path


def read_plan(ssh: SlurmHook, ctx: DayContext) -> dict[str, int]:
    """What the master job planned; ``shards`` sizes the audio job array (0 = nothing to do)."""
    manifest = Manifest.from_json(ssh.read_text(posixpath.join(ctx.day_dir, "manifest.json")))
    if manifest.plan_id != ctx.plan_id:
        raise AirflowFailException(
            f"manifest.json belongs to plan {manifest.plan_id}, this run is plan {ctx.plan_id}: "
            "another run of the same day overwrote it; re-run one of them"
        )
    plan = {
        "shards": len(manifest.shards),
        "clips": len(manifest.clips),
        "listed": manifest.listed,
        "skipped": manifest.skipped,
    }
    log.info("Plan for %s: %s", ctx.day, plan)
    return plan


def read_results(ssh: SlurmHook, ctx: DayContext) -> Iterator[ClipResult]:
    """Every result line of the day on staging (all plans, files in path order), streamed one
    file at a time; the load keeps the newest outcome per clip (``ResultsDbHook``)."""
    for path, content in ssh.iter_tree(ctx.day_dir, "results"):
        if fnmatch.fnmatchcase(path, "results/*/shard-*.jsonl"):
            yield from iter_result_lines(content.decode("utf-8"))


def job_records(ssh: SlurmHook, step_job_ids: dict[str, list[str]]) -> list[JobRecord]:
    """Every job (array index) the steps ran, failed attempts included: one ``sacct`` call."""
    step_of = {job_id: step for step, ids in step_job_ids.items() for job_id in ids}
    return [
        JobRecord(
            step=step_of[j.array_job_id],
            job_id=j.array_job_id,
            array_index=-1 if j.array_index is None else j.array_index,
            state=j.state,
            exit_code=j.exit_code,
            elapsed_s=float(j.elapsed_s or 0),
            node=j.node or "",
            gpus=j.gpus,
            submitted_at=j.submit_time,
            started_at=j.start_time,
        )
        for j in ssh.query(list(step_of))
        if j.array_job_id in step_of
    ]


def record_results(
    ssh: SlurmHook, db: ResultsDbHook, ctx: DayContext, step_job_ids: dict[str, list[str]]
) -> dict[str, Any]:
    """Load the day into PostgreSQL (one transaction) and log the day's summary.

    Skipped when the master job left no plan for this run (nothing to record: an empty day
    must not be reported as complete), or the plan on staging is another run's (a run
    refused by ``claim_day``: the run holding the day records it).
    """
    manifest_path = posixpath.join(ctx.day_dir, "manifest.json")
    if not ssh.exists(manifest_path):
        raise AirflowSkipException(f"no plan at {manifest_path}: the master job did not run")
    manifest = Manifest.from_json(ssh.read_text(manifest_path))
    if manifest.plan_id != ctx.plan_id:
        raise AirflowSkipException(
            f"the plan at {manifest_path} is run {manifest.plan_id}'s, not "
            f"this run's ({ctx.plan_id}): that run records the day"
        )
    summary = db.record_day(
        DayLoad(
            day=ctx.day,
            plan_id=ctx.plan_id,
            dag_run_id=ctx.run_id,
            manifest=manifest,
            results=read_results(ssh, ctx),
            jobs=job_records(ssh, step_job_ids),
        )
    )
    log.info(format_summary(summary))
    return summary


def format_summary(s: dict[str, Any]) -> str:
    reasons = ", ".join(f"{k}={v}" for k, v in sorted(s["failed_by_reason"].items())) or "none"
    rtf = f"{s['real_time_factor']:.1f}x" if s["real_time_factor"] else "n/a"
    return (
        f"Day {s['day']} [{s['status']}]: listed {s['clips_listed']}, planned "
        f"{s['clips_planned']}, skipped {s['clips_skipped']}; transcribed {s['clips_ok']}, "
        f"failed {s['clips_failed']} ({reasons}), missing {s['clips_missing']}; "
        f"audio {s['audio_seconds'] / 3600:.3f} h, "
        f"GPU {s['gpu_seconds'] / 3600:.3f} h, real-time factor {rtf}"
    )


def cleanup_staging(
    ssh: SlurmHook, db: ResultsDbHook, ctx: DayContext, retention_days: int
) -> list[str]:
    """Remove staged audio of complete days older than the retention window.

    Results and logs stay (they are small and are the audit trail); only ``audio/`` goes.
    """
    cutoff = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=retention_days)
    out = ssh.check(
        [
            "find",
            ctx.staging_root,
            "-mindepth",
            "1",
            "-maxdepth",
            "1",
            "-type",
            "d",
            "-name",
            "????-??-??",
        ],
        what=f"listing {ctx.staging_root}",
    )
    removed = []
    for path in sorted(filter(None, out.split("\n"))):
        day = posixpath.basename(path)
        summary = db.day_summary(day)
        if day < cutoff.isoformat() and summary and summary["status"] == "complete":
            audio = posixpath.join(path, "audio")
            ssh.check(["rm", "-rf", "--", audio], what=f"removing {audio}")
            removed.append(audio)
    log.info("Retention %d days: removed %d staged audio dirs", retention_days, len(removed))
    return removed
