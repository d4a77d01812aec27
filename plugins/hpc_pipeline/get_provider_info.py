"""What ``airflow providers list`` / ``get`` show for this distribution (entry point
``apache_airflow_provider``).

No ``connection-types`` are registered: the hooks use the ``ssh`` and ``postgres`` types of the
SSH and Postgres providers (registering them again would only log "already registered"
warnings), and the Globus client id/secret sit in a ``generic`` connection. The integrations
name each connection and its type.
"""

from __future__ import annotations

from typing import Any

from hpc_pipeline import __version__

PACKAGE = "audio-pipeline-airflow"
SLURM = "SLURM over SSH (connection hpc_ssh, type ssh, host key pinned)"
RESULTS = "Audio results database (connection audio_results_db, type postgres)"
GLOBUS = "Globus transfer (connection globus_default, type generic: client id/secret)"


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": PACKAGE,
        "name": "Audio pipeline on SLURM",
        "description": "Daily audio transcription on a SLURM cluster over SSH: submit, watch "
        "(deferred) and judge sbatch jobs, record transcripts in PostgreSQL.",
        "versions": [__version__],
        "integrations": [
            {"integration-name": SLURM, "tags": ["hpc", "slurm", "ssh"]},
            {"integration-name": RESULTS, "tags": ["postgres"]},
            {"integration-name": GLOBUS, "tags": ["transfer"]},
        ],
        "hooks": [
            {"integration-name": SLURM, "python-modules": ["hpc_pipeline.hooks.slurm"]},
            {"integration-name": RESULTS, "python-modules": ["hpc_pipeline.hooks.results_db"]},
        ],
        "operators": [
            {"integration-name": SLURM, "python-modules": ["hpc_pipeline.operators.slurm"]}
        ],
        "sensors": [{"integration-name": SLURM, "python-modules": ["hpc_pipeline.sensors.slurm"]}],
        "triggers": [
            {"integration-name": SLURM, "python-modules": ["hpc_pipeline.triggers.slurm"]}
        ],
    }
