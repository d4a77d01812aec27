"""The Airflow plugin that serves the monitoring app and links its page in the UI's nav.

Airflow finds it either through the plugins folder (``plugins/audio_pipeline_plugin.py``
re-exports it) or, when the Airflow side is installed as a wheel, through the
``airflow.plugins`` entry point ``hpc_pipeline.monitoring.plugin:AudioPipelinePlugin``.
"""
from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from hpc_pipeline.monitoring.app import create_app

URL_PREFIX = "/audio-pipeline"


class AudioPipelinePlugin(AirflowPlugin):
    name = "audio_pipeline"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX,
                     "name": "Audio pipeline monitoring"}]
    # Shown in the UI's navigation; the page opens inside the UI at /plugin/audio-pipeline.
    # The href has no leading slash: the UI resolves it against its base URL.
    external_views = [{"name": "Audio pipeline", "href": "audio-pipeline/",
                       "url_route": "audio-pipeline", "destination": "nav",
                       "nav_top_level": True, "icon": "audio-pipeline/static/icon.svg"}]
