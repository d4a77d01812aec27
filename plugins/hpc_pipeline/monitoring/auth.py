"""Who may read the pipeline's results: an Airflow login, judged by Airflow's auth manager.

The same JWT as the UI and the REST API (``Authorization: Bearer`` or the UI's ``_token``
cookie), checked by Airflow's own FastAPI dependencies, then the right to read the runs of
the pipeline's DAG: transcripts are that DAG's output. No token: 401; a user without access
to the DAG: 403. Pages answer a missing or expired login with a redirect to the login page.
"""

from __future__ import annotations

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import bearer_scheme, get_user, requires_access_dag
from fastapi import Depends, Request
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

PIPELINE_DAG_ID = "audio_pipeline_daily"

# A FastAPI dependency: authenticated user allowed to GET the DAG's runs, else 401 / 403.
require_pipeline_reader = Depends(
    requires_access_dag("GET", DagAccessEntity.RUN, param_dag_id=PIPELINE_DAG_ID)
)


class LoginRequired(Exception):
    """Raised by page routes so that the app answers with a redirect to the login page."""


async def page_access(request: Request) -> None:
    """For HTML pages: like ``require_pipeline_reader``, but a missing, expired or invalid
    token raises ``LoginRequired`` (a user who lacks access to the DAG still gets 403)."""
    try:
        user = await get_user(request, None, await bearer_scheme(request))
    except HTTPException as exc:
        raise LoginRequired from exc
    # The DAG check reads the metadata DB (the DAG's team): off the event loop, as FastAPI
    # does for Airflow's own (sync) dependencies.
    await run_in_threadpool(
        requires_access_dag("GET", DagAccessEntity.RUN, param_dag_id=PIPELINE_DAG_ID), request, user
    )


def login_redirect(request: Request, _exc: LoginRequired) -> RedirectResponse:
    """Send the browser to Airflow's login page, coming back to the page it asked for."""
    next_url = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(get_auth_manager().get_url_login(next_url=next_url), status_code=303)
