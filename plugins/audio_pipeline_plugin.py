"""Plugins-folder entry of the audio pipeline's Airflow plugin (monitoring API and page).

Airflow imports every ``.py`` file of the plugins folder as a top-level module; this file is
the only one it should see (``.airflowignore`` hides the ``hpc_pipeline`` package, which is
imported as a package through ``sys.path`` instead, so nothing is imported twice).
"""
from hpc_pipeline.monitoring.plugin import AudioPipelinePlugin

__all__ = ["AudioPipelinePlugin"]
