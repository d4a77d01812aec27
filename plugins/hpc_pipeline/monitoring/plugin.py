"""The Airflow plugin that serves the monitoring app and links its page in the UI's nav.

Airflow finds it either through the plugins folder (``plugins/audio_pipeline_plugin.py``
re-exports it) or, when the Airflow side is installed as a wheel, through the
``airflow.plugins`` entry point ``hpc_pipeline.monitoring.plugin:AudioPipelinePlugin``.

Every Airflow process loads plugins (task processes too, for macros), but only the
api-server reads ``fastapi_apps``: the app, and with it Airflow's API and auth modules, is
imported on that first read, so a task's start does not pay for them.
"""

from __future__ import annotations

import functools
from typing import Any

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/audio-pipeline"


@functools.cache
def _app() -> Any:
    from hpc_pipeline.monitoring.app import create_app

    return create_app()


class AudioPipelinePlugin(AirflowPlugin):
    name = "audio_pipeline"
    # Shown in the UI's navigation; the page opens inside the UI at /plugin/audio-pipeline.
    # Hrefs have no leading slash: the UI resolves them against its base URL.
    external_views = [
        {
            "name": "Audio pipeline",
            "href": "audio-pipeline/",
            "url_route": "audio-pipeline",
            "destination": "nav",
            "nav_top_level": True,
            "icon": "audio-pipeline/static/icon.svg",
        }
    ]

    @property
    def fastapi_apps(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return [{"app": _app(), "url_prefix": URL_PREFIX, "name": "Audio pipeline monitoring"}]
