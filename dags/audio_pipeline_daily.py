"""audio_pipeline_daily: one run per day of clips → transcripts in PostgreSQL.

The run that fires at the start of day D+1 processes day D. Trigger manually with
``{"date": "YYYY-MM-DD", "reprocess": "none" | "failed" | "all"}`` to (re)process any past day.
Nothing is planned before ``source_ready`` finds the source day ready (the ``readiness``
rule: a marker file or a listing that stopped changing), so late clips are not left out.
Site settings come from the typed config (``AUDIO_PIPELINE_CONFIG``); this file only composes
the plugin's operators and steps.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.providers.common.compat.sdk import AirflowSkipException, conf
from airflow.sdk import DAG, Param, TriggerRule, task

from audio_hpc.contract import results_dir
from hpc_pipeline import CLUSTER_CODE_DIR, steps
from hpc_pipeline.alerts import StepFailureNotifier
from hpc_pipeline.assets import TRANSCRIPTS, transcripts_extra
from hpc_pipeline.config import load_config
from hpc_pipeline.hooks.results_db import ResultsDbHook
from hpc_pipeline.hooks.slurm import SlurmHook
from hpc_pipeline.operators.slurm import XCOM_KEY, SlurmSubmitOperator
from hpc_pipeline.release import deploy_release
from hpc_pipeline.run_report import report_day as write_report
from hpc_pipeline.sensors.source_ready import SourceReadySensor

CONFIG = load_config()


def ctx(key: str) -> str:
    """Jinja for one field of the day context pushed by ``resolve_day``."""
    return "{{ ti.xcom_pull(task_ids='resolve_day')['" + key + "'] }}"


RELEASE = "{{ ti.xcom_pull(task_ids='deploy_code') }}"
JOB_ENV = {
    "PIPELINE_RELEASE": RELEASE,
    "CONTAINER_RUNTIME": CONFIG.container_runtime,
    "HPC_PYTHON": CONFIG.hpc_python,
    "IMAGES_DIR": CONFIG.images_dir,
    "STAGING_ROOT": ctx("staging_root"),
    "MODELS_DIR": CONFIG.models_dir,
    "HF_HUB_OFFLINE": "1",
    # Staging is private to the submit user (or staging_group): SLURM creates the job logs
    # with SLURM_UMASK, the job scripts apply STAGING_UMASK to what they write.
    "SLURM_UMASK": CONFIG.staging_umask,
    "STAGING_UMASK": CONFIG.staging_umask,
}


def slurm_step(step: str, script: str, args: list[str], **kwargs: Any) -> SlurmSubmitOperator:
    return SlurmSubmitOperator(
        task_id=step,
        ssh_conn_id=CONFIG.ssh_conn_id,
        script=f"{RELEASE}/slurm/{script}",
        script_args=args,
        job_name=f"{CONFIG.job_prefix}-{step}-{ctx('day')}-{ctx('plan_id')}",
        resources=CONFIG.resources[step],
        env=JOB_ENV,
        log_dir=f"{ctx('day_dir')}/logs",
        poll_interval=CONFIG.poll_interval_s,
        max_poll_interval=CONFIG.max_poll_interval_s,
        outage_timeout=CONFIG.ssh_outage_timeout_s,
        max_pending_s=CONFIG.max_pending_s,
        max_array_size=CONFIG.max_array_size,
        max_job_count=CONFIG.max_job_count,
        **kwargs,
    )


with DAG(
    dag_id="audio_pipeline_daily",
    description="Daily HPC audio transcription: plan, transfer, WhisperX shards, PostgreSQL",
    schedule=CONFIG.schedule,
    start_date=CONFIG.start_datetime,
    catchup=CONFIG.catchup,
    max_active_runs=CONFIG.max_active_runs,
    doc_md=__doc__,
    tags=["audio", "hpc", "slurm"],
    params={
        "date": Param(
            None,
            type=["null", "string"],
            title="Day to process (YYYY-MM-DD)",
            description="Empty: the day before the run's logical date.",
            pattern=r"^\d{4}-\d{2}-\d{2}$",
        ),
        "reprocess": Param(
            "none",
            enum=["none", "failed", "all"],
            title="Reprocess",
            description="none: only new clips; failed: also retry failed "
            "clips; all: transcribe every clip again.",
        ),
    },
    default_args={
        "retries": CONFIG.retries,
        "retry_delay": dt.timedelta(seconds=CONFIG.retry_delay_s),
        "retry_exponential_backoff": True,
        "max_retry_delay": dt.timedelta(seconds=CONFIG.max_retry_delay_s),
        # A step that fails for good mails its day, name and reason (alerts.* config).
        "on_failure_callback": StepFailureNotifier(CONFIG.alerts, CONFIG.results_conn_id),
    },
) as dag:

    @task  # a bad date raises AirflowFailException: no retry; a worker lost under load: retried
    def resolve_day(
        params: dict[str, Any], run_id: str, logical_date: dt.datetime | None = None
    ) -> dict[str, str]:
        with SlurmHook(CONFIG.ssh_conn_id) as ssh:
            return steps.resolve_day(
                ssh,
                CONFIG,
                date_param=params.get("date"),
                reprocess=params.get("reprocess") or "none",
                logical_date=logical_date,
                run_id=run_id,
            ).to_xcom()

    @task
    def ensure_schema() -> list[str]:
        return ResultsDbHook(CONFIG.results_conn_id).migrate()

    @task
    def deploy_code(day_ctx: dict[str, str]) -> str:
        with SlurmHook(CONFIG.ssh_conn_id) as ssh:
            return deploy_release(ssh, CLUSTER_CODE_DIR, day_ctx["release_root"])

    @task
    def write_request(day_ctx: dict[str, str], **context: Any) -> dict[str, int]:
        ti, day, db = (
            context["ti"],
            steps.DayContext(**day_ctx),
            ResultsDbHook(CONFIG.results_conn_id),
        )
        steps.claim_day(db, day, lambda run_id: steps.run_is_active(ti, run_id))
        with SlurmHook(CONFIG.ssh_conn_id) as ssh:
            return steps.write_request(ssh, db, CONFIG, day)

    @task
    def globus_credentials(day_ctx: dict[str, str]) -> str:
        with SlurmHook(CONFIG.ssh_conn_id) as ssh:
            return steps.write_globus_credentials(ssh, CONFIG, steps.DayContext(**day_ctx))

    @task
    def read_plan(day_ctx: dict[str, str]) -> dict[str, int]:
        with SlurmHook(CONFIG.ssh_conn_id) as ssh:
            return steps.read_plan(ssh, steps.DayContext(**day_ctx))

    # With exports on, the day's Asset event comes from export_day (its extra names the file).
    @task(
        trigger_rule=TriggerRule.ALL_DONE_MIN_ONE_SUCCESS,
        outlets=[] if CONFIG.export_dir else [TRANSCRIPTS],
    )
    def record_results(day_ctx: dict[str, str], **context: Any) -> dict[str, Any]:
        job_ids = {
            step: (context["ti"].xcom_pull(task_ids=step, key=XCOM_KEY) or {}).get("job_ids", [])
            for step in ("master", "transfer", "audio")
        }
        with SlurmHook(CONFIG.ssh_conn_id) as ssh:
            summary = steps.record_results(
                ssh, ResultsDbHook(CONFIG.results_conn_id), steps.DayContext(**day_ctx), job_ids
            )
        if not CONFIG.export_dir:
            context["outlet_events"][TRANSCRIPTS].extra = transcripts_extra(
                summary, day_ctx["run_id"]
            )
        return summary

    @task(outlets=[TRANSCRIPTS])
    def export_day(day_ctx: dict[str, str], **context: Any) -> dict[str, Any]:
        """The day's transcripts as Parquet in ``export_dir`` (config), for analysis."""
        from hpc_pipeline.transcripts.export import export_day_file  # pyarrow: not at parse

        summary = context["ti"].xcom_pull(task_ids="record_results")
        assert CONFIG.export_dir, "the step exists only with export_dir set"
        written = export_day_file(
            ResultsDbHook(CONFIG.results_conn_id), day_ctx["day"], CONFIG.export_dir
        )
        context["outlet_events"][TRANSCRIPTS].extra = {
            **transcripts_extra(summary, day_ctx["run_id"]),
            **written,
        }
        return written

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def report_day(**context: Any) -> dict[str, Any]:
        """The run's note (the day's summary + status page link) and the day alerts. Runs
        whatever failed before it; its success does not turn a failed run green (the run is
        judged on every leaf, ``cleanup_staging`` included)."""
        ti = context["ti"]
        resolved = ti.xcom_pull(task_ids="resolve_day")
        if not resolved:
            raise AirflowSkipException("no day was resolved: nothing to report")
        states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
        failed = sorted(t for t, s in states.items() if s == "failed")
        return write_report(
            CONFIG,
            context,
            resolved["day"],
            ti.xcom_pull(task_ids="record_results"),
            failed,
            conf.get("api", "base_url", fallback=""),
        )

    @task(trigger_rule=TriggerRule.NONE_FAILED)
    def cleanup_staging(day_ctx: dict[str, str]) -> list[str]:
        with SlurmHook(CONFIG.ssh_conn_id) as ssh:
            return steps.cleanup_staging(
                ssh,
                ResultsDbHook(CONFIG.results_conn_id),
                steps.DayContext(**day_ctx),
                CONFIG.retention_days,
            )

    day_ctx = resolve_day()
    day_args = [
        "--date",
        ctx("day"),
        "--staging-root",
        ctx("staging_root"),
        "--backend",
        CONFIG.transfer_backend,
    ]
    master_args = ["--source-root", CONFIG.source_root, "--shard-size", str(CONFIG.shard_size)]
    transfer_args = ["--deadline-hours", str(CONFIG.transfer_deadline_hours)]
    if CONFIG.transfer_backend == "globus":
        credentials = [
            "--globus-credentials",
            "{{ ti.xcom_pull(task_ids='globus_credentials') }}",
            "--source-collection",
            CONFIG.globus_source_collection,
        ]
        master_args += credentials
        transfer_args += credentials + [
            "--dest-collection",
            CONFIG.globus_dest_collection,
            "--dest-root",
            CONFIG.globus_dest_root,
        ]
    master = slurm_step("master", "0_master_scheduler.sh", day_args + master_args)
    transfer = slurm_step("transfer", "1_globus_transfer_job.sh", day_args + transfer_args)
    audio = slurm_step(
        "audio",
        "2_process_audio_job.sh",
        [
            "--date",
            ctx("day"),
            "--staging-root",
            ctx("staging_root"),
            "--plan-id",
            ctx("plan_id"),
            "--models-dir",
            CONFIG.models_dir,
            "--model",
            CONFIG.model_name,
            "--engine",
            CONFIG.engine,
            "--language",
            CONFIG.language,
            "--compute-type",
            CONFIG.compute_type,
            "--batch-size",
            str(CONFIG.batch_size),
            *(["--beam-size", str(CONFIG.beam_size)] if CONFIG.beam_size else []),
            "--max-clip-seconds",
            str(CONFIG.max_clip_seconds),
        ],
        array_size="{{ ti.xcom_pull(task_ids='read_plan')['shards'] }}",
        # progress in the trigger log: clips done / total from the shards' result lines
        results_dir=results_dir(ctx("staging_root"), ctx("day"), ctx("plan_id")),
        clips_total="{{ ti.xcom_pull(task_ids='read_plan')['clips'] }}",
    )
    plan = read_plan(day_ctx)
    recorded = record_results(day_ctx)

    # Late data: the midnight run may find day D still arriving; plan only once it is ready.
    source_ready = SourceReadySensor(
        task_id="source_ready",
        day=ctx("day"),
        source_root=CONFIG.source_root,
        readiness=CONFIG.readiness,
        backend=CONFIG.transfer_backend,
        ssh_conn_id=CONFIG.ssh_conn_id,
        globus_conn_id=CONFIG.globus_conn_id,
        collection=CONFIG.globus_source_collection,
    )
    request = write_request(day_ctx)
    day_ctx >> source_ready >> request
    [ensure_schema(), deploy_code(day_ctx)] >> request >> master >> plan >> transfer
    if CONFIG.transfer_backend == "globus":
        globus_credentials(day_ctx) >> master
    transfer >> audio >> recorded
    # The day is red when any step failed, even though recording ran to keep partial results.
    [recorded, audio] >> cleanup_staging(day_ctx)
    recorded >> report_day()
    if CONFIG.export_dir:
        recorded >> export_day(day_ctx)
