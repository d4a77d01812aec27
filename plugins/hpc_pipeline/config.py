"""One typed configuration for everything site-specific, with documented defaults.

Site overrides come from a JSON file named by ``AUDIO_PIPELINE_CONFIG`` (nested keys
override the defaults below, e.g. ``{"resources": {"audio": {"partition": "a100"}}}``).
Secrets never live here: they stay in Airflow connections (``ssh_conn_id``,
``results_conn_id``, ``globus_conn_id``).
"""
from __future__ import annotations

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
    time: str = "01:00:00"           # --time; whole minutes are enforced by SLURM
    mem: str | None = "1G"            # --mem
    cpus_per_task: int = 1
    gres: str | None = None           # e.g. "gpu:1"
    array_parallelism: int | None = None  # the %N of --array=0-9%N
    extra_args: tuple[str, ...] = ()  # any other sbatch flags, one per item


def _default_resources() -> dict[str, SlurmResources]:
    return {
        "master": SlurmResources(partition="cpu", time="00:15:00", mem="1G"),
        "transfer": SlurmResources(partition="cpu", time="02:00:00", mem="1G"),
        "audio": SlurmResources(partition="gpu", time="04:00:00", mem="4G", cpus_per_task=2,
                                gres="gpu:1", array_parallelism=4),
    }


@dataclass(frozen=True)
class PipelineConfig:
    # Connections (secrets live there).
    ssh_conn_id: str = "hpc_ssh"
    results_conn_id: str = "audio_results_db"
    globus_conn_id: str = "globus_default"  # login = client id, password = client secret
    # Cluster layout.
    remote_root: str = "audio-pipeline"      # relative paths are under the SSH user's home
    staging_root: str = "audio-pipeline/staging"
    # Staging holds clips under data-use agreements: readable by the submit user only, or
    # also by this group (dirs 2750, files 0640; else 0700 / 0600).
    staging_group: str | None = None
    job_prefix: str = "audio"
    container_runtime: str = "none"          # apptainer | singularity | none
    images_dir: str = "audio-pipeline/images"  # audio_processing.sif, pipeline_utils.sif
    hpc_python: str = "/opt/hpc-venv/bin/python"  # interpreter when container_runtime=none
    # Source and transfer.
    transfer_backend: str = "local"          # local | globus
    source_root: str = "/srv/audio-source"   # <source_root>/<YYYY-MM-DD>/<clips>
    globus_source_collection: str = ""
    globus_dest_collection: str = ""
    globus_dest_root: str = ""               # staging_root as the destination collection sees it
    transfer_deadline_hours: int = 12
    # Transcription.
    engine: str = "whisperx"                 # whisperx | torch
    models_dir: str = "/opt/hpc-models"
    model_name: str = "faster-whisper-tiny.en"  # a directory under models_dir
    language: str = "en"                     # "" = detect per clip
    compute_type: str = "int8"
    batch_size: int = 16
    beam_size: int | None = None             # 1 = greedy; None = engine default (whisperx 5, torch 1)
    max_clip_seconds: int = 600
    shard_size: int = 50
    # Scheduling.
    schedule: str | None = "@daily"          # None: on-demand only (manual runs with a date)
    resources: dict[str, SlurmResources] = field(default_factory=_default_resources)
    catchup: bool = False
    max_active_runs: int = 2
    retries: int = 2
    retry_delay_s: int = 60
    max_retry_delay_s: int = 900
    poll_interval_s: float = 10.0
    max_poll_interval_s: float = 120.0
    ssh_outage_timeout_s: float = 900.0
    # Housekeeping.
    retention_days: int = 7                  # staging of a day is removed this long after success

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
        elif key == "extra_args":
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
