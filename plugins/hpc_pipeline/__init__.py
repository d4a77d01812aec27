"""The Airflow side of the audio pipeline: SLURM-over-SSH hook, operator, sensor and trigger,
the results database hook and the DAG's steps (installable as ``audio-pipeline-airflow``).

The cluster code (``hpc/``: the sbatch scripts and the jobs' entry points) travels with this
package: a built distribution bundles it as ``hpc_pipeline/cluster/``, a checkout's plugins
folder uses the repository's ``hpc/``. Its ``src/pipeline_contract.py`` (the formats both sides
share) is a single file: the cluster imports it as ``pipeline_contract`` from the release's
``src/``, and this package as ``hpc_pipeline.pipeline_contract``, because that ``src/`` is on
this package's module search path (``__path__``).
"""
from pathlib import Path

__version__ = "1.0.0"

_BUNDLED = Path(__file__).resolve().parent / "cluster"
#: What ``deploy_code`` uploads as ``releases/<content hash>`` to the cluster.
CLUSTER_CODE_DIR = _BUNDLED if _BUNDLED.is_dir() else Path(__file__).resolve().parents[2] / "hpc"
if not (CLUSTER_CODE_DIR / "src" / "pipeline_contract.py").is_file():
    raise ImportError(f"hpc_pipeline: no cluster code at {CLUSTER_CODE_DIR}: install the built "
                      "distribution, or keep plugins/ next to the repository's hpc/")
__path__.append(str(CLUSTER_CODE_DIR / "src"))
