"""One typed configuration for everything site-specific, with documented defaults.

Site overrides come from a JSON file named by ``AUDIO_PIPELINE_CONFIG`` (nested keys
override the defaults below, e.g. ``{"resources": {"audio": {"partition": "a100"}}}``).
Secrets never live here: they stay in Airflow connections (``ssh_conn_id``,
``results_conn_id``, ``globus_conn_id``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from typing import Any


@dataclass(frozen=True)
class SlurmResources:
    """``sbatch`` options for one step. ``None`` leaves the site default in force."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: str = "01:00:00"  # --time; whole minutes are enforced by SLURM
    mem: str | None = "1G"  # --mem
    cpus_per_task: int = 1
    gres: str | None = None  # e.g. "gpu:1"
    array_parallelism: int | None = None  # the %N of --array=0-9%N
    extra_args: tuple[str, ...] = ()  # any other sbatch flags, one per item

    def describe(self) -> str:
        """What the step asks SLURM for, e.g. ``partition=gpu, gres=gpu:1, mem=32G, ...``."""
        fields = {
            "partition": self.partition,
            "account": self.account,
            "qos": self.qos,
            "gres": self.gres,
            "mem": self.mem,
            "cpus_per_task": self.cpus_per_task,
            "time": self.time,
            "extra_args": " ".join(self.extra_args),
        }
        return ", ".join(f"{k}={v}" for k, v in fields.items() if v)


# A GPU shard's cores: the shard decodes with 3/4 of them. On an H200 node a 1,000-clip
# large-v3 shard ran 1,981 audio-s/s end to end with 12 decode workers (1,959 with 8, 1,931
# with 16); large-v3-turbo's shape wants more (2,962 with 16, 2,480 with 8):
# bench/results/h200_run_k_*.json.
CPU_CORES_PER_GPU_SHARD = 16


def _default_resources() -> dict[str, SlurmResources]:
    return {
        "master": SlurmResources(partition="cpu", time="00:15:00", mem="1G"),
        "transfer": SlurmResources(partition="cpu", time="02:00:00", mem="1G"),
        # One GPU and the cores that keep it fed (decoding compressed clips)
        "audio": SlurmResources(
            partition="gpu",
            time="04:00:00",
            mem="32G",
            cpus_per_task=CPU_CORES_PER_GPU_SHARD,
            gres="gpu:1",
            array_parallelism=4,
        ),
    }


@dataclass(frozen=True)
class Readiness:
    """When the source day is complete enough to plan (see ``hpc_pipeline.readiness``).

    ``marker``: ``<day>/<marker_name>`` exists; ``stable``: at least ``min_clips`` clips and
    the listing (names, sizes, mtimes) unchanged for ``stable_s`` of observation; ``none``:
    plan at once, as before. Past ``deadline_s`` of waiting the task fails, naming what was
    missing, and nothing is submitted.
    """

    rule: str = "stable"  # marker | stable | none
    marker_name: str = "_READY"
    stable_s: float = 1800.0
    min_clips: int = 1  # stable: an empty day is never "stable"
    poll_interval_s: float = 60.0  # backoff from here (x1.5 per quiet poll, +-20% jitter)
    max_poll_interval_s: float = 300.0
    deadline_s: float = 6 * 3600.0  # from the start of the wait

    def __post_init__(self) -> None:
        if self.rule not in ("marker", "stable", "none"):
            raise ValueError(
                f"config: readiness.rule must be marker, stable or none, got {self.rule!r}"
            )


@dataclass(frozen=True)
class AlertConfig:
    """Who hears about bad days, and when (``hpc_pipeline.alerts``). No mail on a clean day."""

    to: tuple[str, ...] = ()  # recipients; empty = alerts are only logged
    smtp_conn_id: str = "smtp_default"  # Airflow SMTP connection (host, port, TLS, login)
    from_email: str | None = None  # None: the connection's extra ``from_email``
    max_failed_ratio: float = 0.05  # partial day: alert when failed / planned exceeds it
    days_without_complete: int = 3  # alert when none of the last N days is complete; 0 off


@dataclass(frozen=True)
class PipelineConfig:
    # Connections (secrets live there).
    ssh_conn_id: str = "hpc_ssh"
    results_conn_id: str = "audio_results_db"
    globus_conn_id: str = "globus_default"  # login = client id, password = client secret
    # Cluster layout.
    remote_root: str = "audio-pipeline"  # relative paths are under the SSH user's home
    staging_root: str = "audio-pipeline/staging"
    # Staging holds clips under data-use agreements: readable by the submit user only, or
    # also by this group (dirs 2750, files 0640; else 0700 / 0600).
    staging_group: str | None = None
    job_prefix: str = "audio"
    container_runtime: str = "none"  # apptainer | singularity | none
    images_dir: str = "audio-pipeline/images"  # audio_processing.sif, pipeline_utils.sif
    hpc_python: str = "/opt/hpc-venv/bin/python"  # interpreter when container_runtime=none
    # Source and transfer.
    transfer_backend: str = "local"  # local | globus
    source_root: str = "/srv/audio-source"  # <source_root>/<YYYY-MM-DD>/<clips>
    globus_source_collection: str = ""
    globus_dest_collection: str = ""
    globus_dest_root: str = ""  # staging_root as the destination collection sees it
    transfer_deadline_hours: int = 12
    readiness: Readiness = field(default_factory=Readiness)  # wait for late data before planning
    # Transcription. The defaults are what a GPU site runs (one H200 or H100 per shard); the
    # demo/test site (config/local.json) overrides them with tiny.en on CPU through WhisperX.
    engine: str = "torch"  # torch (GPU, batched across clips) | whisperx
    models_dir: str = "/opt/hpc-models"
    model_name: str = (
        "faster-whisper-large-v3"  # a dir under models_dir: CTranslate2 or Hugging Face
    )
    language: str = ""  # "" = detect per clip; "en" = English only
    compute_type: str = "bfloat16"  # torch: bfloat16 | float16 | float32; whisperx: int8 | ...
    batch_size: int = 256  # decoder rows per batch (torch: 256 fits 80 GB)
    beam_size: int | None = None  # 1 = greedy; None = engine default (whisperx 5, torch 1)
    max_clip_seconds: int = 600
    shard_size: int = 1000  # clips per array task (one GPU each: ~35,000 audio-s, so
    # the ~1 min engine start is small beside it)
    # Scheduling.
    schedule: str | None = "@daily"  # None: on-demand only (manual runs with a date)
    start_date: str = "2024-01-01"  # first logical date (UTC): catchup and backfills start here
    resources: dict[str, SlurmResources] = field(default_factory=_default_resources)
    catchup: bool = False
    max_active_runs: int = 2
    retries: int = 2
    retry_delay_s: int = 60
    max_retry_delay_s: int = 900
    poll_interval_s: float = 10.0
    max_poll_interval_s: float = 120.0
    ssh_outage_timeout_s: float = 900.0
    # A job pending this long for a reason that means SLURM will not start it as submitted
    # (BadConstraints, ReqNodeNotAvail, DependencyNeverSatisfied, ...: slurm/pending.py) is
    # cancelled and its task fails, naming the reason; None = wait as long as SLURM keeps it.
    # Ordinary queueing (Priority, Resources, limits of a group) is never limited.
    max_pending_s: float | None = 3600.0
    # Site array limits: the controller's MaxArraySize / MaxJobCount (scontrol show config) are
    # read at submit time; these lower them (e.g. a QOS cap on queued jobs). An array larger
    # than the limit is split into several submissions; see SlurmSubmitOperator.
    max_array_size: int | None = None
    max_job_count: int | None = None
    # Housekeeping.
    retention_days: int = 7  # staging of a day is removed this long after success
    # Analysis exports: the DAG's export_day step writes <export_dir>/<day>.parquet after
    # record_results (and the day's Asset event names the file); None = no such step.
    export_dir: str | None = None
    # Monitoring: alerts, and the REST API connection that writes each run's note.
    alerts: AlertConfig = field(default_factory=AlertConfig)
    api_conn_id: str = "airflow_api"  # http connection: host = Airflow's URL, login/password

    def __post_init__(self) -> None:
        try:
            dt.date.fromisoformat(self.start_date)
        except (TypeError, ValueError):
            raise ValueError(
                f"config: start_date {self.start_date!r} is not a YYYY-MM-DD date"
            ) from None

    @property
    def start_datetime(self) -> dt.datetime:
        """``start_date`` as the DAG's aware start (midnight UTC)."""
        return dt.datetime.combine(
            dt.date.fromisoformat(self.start_date), dt.time(), tzinfo=dt.timezone.utc
        )

    @property
    def staging_umask(self) -> str:
        """umask of the jobs (and SLURM's job logs) that write staging."""
        return "0027" if self.staging_group else "0077"

    @property
    def staging_dir_mode(self) -> int:
        """Mode of staging dirs Airflow creates (setgid: files inherit the group)."""
        return 0o2750 if self.staging_group else 0o700

    @property
    def staging_file_mode(self) -> int:
        return 0o640 if self.staging_group else 0o600


def _merge(obj: Any, overrides: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(obj)}
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in known:
            raise ValueError(f"config: unknown key {where}{key!r}; known: {sorted(known)}")
        current = getattr(obj, key)
        if key == "resources":
            merged = dict(current)
            for step, res in value.items():
                merged[step] = _merge(merged.get(step, SlurmResources()), res, f"resources.{step}.")
            changes[key] = merged
        elif is_dataclass(current):
            changes[key] = _merge(current, value, f"{where}{key}.")
        elif isinstance(current, tuple):  # extra_args, alerts.to: JSON lists
            changes[key] = tuple(value)
        else:
            changes[key] = value
    return replace(obj, **changes)


def load_config(path: str | None = None) -> PipelineConfig:
    """Defaults, overridden by the JSON file at ``path`` or ``$AUDIO_PIPELINE_CONFIG``."""
    path = path or os.environ.get("AUDIO_PIPELINE_CONFIG")
    config = PipelineConfig()
    if path:
        with open(path, encoding="utf-8") as fh:
            config = _merge(config, json.load(fh), "")
    return config


def as_dict(config: PipelineConfig) -> dict[str, Any]:
    return asdict(config)
