"""The end of a day's run: its one-line summary as the DAG run's note, and the day alerts.

Why the note: a day with failed clips is a green run, indistinguishable in the grid from a
complete day; the note (shown on the run without opening a log) says ``partial`` and how
many clips failed for which reasons, and links the day's status page.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from airflow.providers.common.compat.sdk import AirflowNotFoundException

from hpc_pipeline import alerts
from hpc_pipeline.config import PipelineConfig
from hpc_pipeline.hooks.airflow_api import AirflowApiHook
from hpc_pipeline.hooks.results_db import ResultsDbHook

log = logging.getLogger(__name__)
STATUS_PAGE = "/audio-pipeline/"  # the monitoring plugin's page, under Airflow's URL


def status_page_link(day: str, base_url: str = "") -> str:
    """The day's status page, under the path Airflow is served at (``[api] base_url``)."""
    prefix = urlsplit(base_url).path.rstrip("/")
    return f"{prefix}{STATUS_PAGE}?day={day}"


def summary_line(day: str, summary: dict[str, Any] | None, failed_steps: list[str]) -> str:
    """``Day 2024-01-15 partial: ok 6, failed 4 (corrupt 1, empty 1), missing 0``."""
    if summary is None:
        line = f"Day {day} not recorded"
    else:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(summary["failed_by_reason"].items()))
        line = (
            f"Day {day} {summary['status']}: ok {summary['clips_ok']}, failed "
            f"{summary['clips_failed']}"
            + (f" ({reasons})" if reasons else "")
            + f", missing {summary['clips_missing']}"
        )
    if failed_steps:
        line += f"; failed steps: {', '.join(failed_steps)}"
    return line


def report_day(
    config: PipelineConfig,
    context: Any,
    day: str,
    summary: dict[str, Any] | None,
    failed_steps: list[str],
    base_url: str = "",
) -> dict[str, Any]:
    """Set the run's note, then mail the day's problems not mailed before in this run (see
    ``hpc_pipeline.alerts``); return what was done."""
    ti = context["ti"]
    link = status_page_link(day, base_url)
    line = summary_line(day, summary, failed_steps)
    note = f"{line} · [status page]({link})"
    try:
        AirflowApiHook(config.api_conn_id).set_run_note(ti.dag_id, ti.run_id, note)
        log.info("Run note: %s", note)
    except AirflowNotFoundException:  # a site without the API connection: no note, still alerts
        log.warning(
            "Connection %r is not defined: the run's note is not set (%s)", config.api_conn_id, note
        )
    db = ResultsDbHook(config.results_conn_id)
    problems = alerts.day_problems(day, summary, db.last_complete_day(day), config.alerts)
    mailed, repeated = False, []
    if problems:
        # recorded as sent only once the mail went (or was logged, with nobody to mail)
        with db.alerts_to_send(day, ti.run_id, {p.kind: p.text for p in problems}) as new:
            repeated = [p.kind for p in problems if p.kind not in new]
            alert = alerts.day_alert(
                day, ti.run_id, [p for p in problems if p.kind in new], line, link
            )
            if alert:
                mailed = alerts.send(alert, config.alerts, context)
        if repeated:
            log.info(
                "Day %s: already alerted in run %s, not mailed again: %s",
                day,
                ti.run_id,
                ", ".join(repeated),
            )
    else:
        log.info("Day %s: nothing to alert about", day)
    return {
        "note": note,
        "problems": [p.text for p in problems],
        "mailed": mailed,
        "already_alerted": repeated,
    }
