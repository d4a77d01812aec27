"""Plugins-folder entry of the audio pipeline's Airflow plugin (monitoring API and page).

Airflow imports every ``.py`` file of the plugins folder as a top-level module; this file is
the only one it should see (``.airflowignore`` hides the ``hpc_pipeline`` package, which is
imported as a package through ``sys.path`` instead, so nothing is imported twice).

A site that installs the distribution gets the plugin through its ``airflow.plugins`` entry
point; ``hpc_pipeline`` then resolves to site-packages and this file registers nothing, so the
plugin is never registered twice.
"""

from pathlib import Path

import hpc_pipeline

if Path(hpc_pipeline.__file__).resolve().parent.parent == Path(__file__).resolve().parent:
    from hpc_pipeline.monitoring.plugin import AudioPipelinePlugin  # noqa: F401
