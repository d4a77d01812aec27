"""Registers the monitoring plugin when ``hpc_pipeline`` is imported from this plugins folder
(the demo, docker-compose, the tests).

A site that installs the distribution gets the plugin through its ``airflow.plugins`` entry
point; ``hpc_pipeline`` then resolves to site-packages (ahead of this folder on ``sys.path``)
and this file registers nothing, so the plugin is never registered twice.
"""
from pathlib import Path

import hpc_pipeline

if Path(hpc_pipeline.__file__).resolve().parent.parent == Path(__file__).resolve().parent:
    from hpc_pipeline.monitoring.plugin import AudioPipelinePlugin  # noqa: F401
