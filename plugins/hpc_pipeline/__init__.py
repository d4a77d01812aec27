"""The Airflow side of the audio pipeline: SLURM-over-SSH hook, operator, sensor and trigger,
the results database hook and the DAG's steps (installable as ``audio-pipeline-airflow``).

The cluster code travels with this package: ``audio_hpc`` (the formats both sides share,
``audio_hpc.contract``, imported by name) is installed beside it, and the cluster release that
``deploy_code`` uploads (``hpc/``: the sbatch scripts and ``src/audio_hpc``) is bundled as
``hpc_pipeline/cluster/`` in a built distribution; a checkout uses the repository's ``hpc/``.
"""

from pathlib import Path

__version__ = "1.0.0"

_BUNDLED = Path(__file__).resolve().parent / "cluster"
#: What ``deploy_code`` uploads as ``releases/<content hash>`` to the cluster.
CLUSTER_CODE_DIR = _BUNDLED if _BUNDLED.is_dir() else Path(__file__).resolve().parents[2] / "hpc"
if not (CLUSTER_CODE_DIR / "src" / "audio_hpc" / "contract.py").is_file():
    raise ImportError(
        f"hpc_pipeline: no cluster code at {CLUSTER_CODE_DIR}: install the built "
        "distribution, or keep plugins/ next to the repository's hpc/"
    )
