"""The Airflow Asset the daily DAG updates when a day's transcripts land in PostgreSQL.

``record_results`` emits one event per recorded day, with the day and its counts as the
event's extra, so a downstream DAG can run on "transcripts of a day landed"::

    from airflow.sdk import DAG, task
    from hpc_pipeline.assets import TRANSCRIPTS

    with DAG("transcripts_downstream", schedule=[TRANSCRIPTS]):
        @task
        def use(triggering_asset_events=None):
            for event in triggering_asset_events[TRANSCRIPTS]:
                print(event.extra["day"], event.extra["status"], event.extra["clips_ok"])
        use()
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Asset

from hpc_pipeline.results.reads import DAY_COUNTS

TRANSCRIPTS = Asset(
    name="audio_pipeline_transcripts", uri="audio-pipeline://transcripts", group="audio-pipeline"
)


def transcripts_extra(summary: dict[str, Any], run_id: str) -> dict[str, Any]:
    """The event's extra: the day, its status and counts (plain JSON types)."""
    return {
        "day": summary["day"],
        "status": summary["status"],
        "dag_run_id": run_id,
        **{k: int(summary[k]) for k in DAY_COUNTS},
        "failed_by_reason": {k: int(v) for k, v in summary["failed_by_reason"].items()},
        "audio_seconds": float(summary["audio_seconds"] or 0),
        "gpu_seconds": float(summary["gpu_seconds"] or 0),
    }
