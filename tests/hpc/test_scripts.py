"""The job scripts: shellcheck-clean, and the runtime wrapper builds the right command."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from support import REPO

SLURM = REPO / "hpc" / "slurm"
SCRIPTS = ["0_master_scheduler.sh", "1_globus_transfer_job.sh", "2_process_audio_job.sh"]


def test_shellcheck_clean() -> None:
    proc = subprocess.run(
        ["shellcheck", "-x", *(str(SLURM / s) for s in SCRIPTS), str(SLURM / "_runtime.sh")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout


def _run(script: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SLURM / script), *args],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "PIPELINE_RELEASE": str(REPO / "hpc"), **env},
    )


def test_unknown_runtime_is_a_clear_error() -> None:
    proc = _run("0_master_scheduler.sh", {"CONTAINER_RUNTIME": "docker"}, "--date", "x")
    assert proc.returncode == 2
    assert "unknown CONTAINER_RUNTIME 'docker'" in proc.stderr


def test_missing_release_is_a_clear_error() -> None:
    proc = subprocess.run(
        ["bash", str(SLURM / "1_globus_transfer_job.sh")],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"]},
    )
    assert proc.returncode != 0
    assert "PIPELINE_RELEASE must name the release directory" in proc.stderr


@pytest.fixture
def fake_apptainer(tmp_path: Path) -> Path:
    """An ``apptainer`` on PATH that prints the argv it was given, one per line."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "apptainer"
    exe.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    exe.chmod(0o755)
    return bin_dir


def test_container_command_binds_and_gpu(fake_apptainer: Path) -> None:
    env = {
        "PATH": f"{fake_apptainer}:{os.environ['PATH']}",
        "CONTAINER_RUNTIME": "apptainer",
        "IMAGES_DIR": "/images",
        "STAGING_ROOT": "/staging",
        "MODELS_DIR": "/models",
        "SLURM_ARRAY_TASK_ID": "3",
    }
    audio = _run("2_process_audio_job.sh", env, "--date", "2024-01-15").stdout.split("\n")
    assert audio[:10] == [
        "exec",
        "--nv",
        "--bind",
        f"{REPO}/hpc/src:/opt/audio_pipeline/src",
        "--bind",
        "/staging",
        "--bind",
        "/models",
        "--env",
        "PYTHONPATH=/opt/audio_pipeline/src",
    ]
    assert audio[10:16] == [
        "/images/audio_processing.sif",
        "python3",
        "-m",
        "audio_hpc.process",
        "--shard",
        "3",
    ]
    offset = _run("2_process_audio_job.sh", env | {"ARRAY_INDEX_OFFSET": "1000"}).stdout
    assert offset.split("\n")[13:16] == [
        "audio_hpc.process",
        "--shard",
        "1003",
    ]  # part of a split array: shard = index + offset
    master = _run("0_master_scheduler.sh", env, "--date", "2024-01-15").stdout.split("\n")
    assert "--nv" not in master
    assert "/images/pipeline_utils.sif" in master
    assert master[-3:-1] == ["--date", "2024-01-15"]
