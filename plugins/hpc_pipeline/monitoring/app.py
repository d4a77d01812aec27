"""The monitoring FastAPI app: JSON API, status page, its assets, Prometheus metrics.

Mounted by the plugin at ``/audio-pipeline``; every route requires an Airflow login (see
:mod:`.auth`), the OpenAPI schema and its docs page included. Routes are plain ``def``
functions: the DB calls block, so FastAPI runs them in its thread pool.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi import Path as PathParam
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from psycopg import OperationalError

from hpc_pipeline.config import load_config
from hpc_pipeline.hooks.results_db import ResultsDbHook
from hpc_pipeline.monitoring import metrics, transcript_routes
from hpc_pipeline.monitoring.auth import (
    LoginRequired,
    login_redirect,
    page_access,
    require_pipeline_reader,
)
from hpc_pipeline.monitoring.models import (
    Clip,
    ClipPage,
    ClipStatus,
    DayDetail,
    DayList,
    DaySummary,
    Health,
    Transcript,
    node_counts,
)

STATIC = Path(__file__).resolve().parent / "static"
MAX_RANGE_DAYS = 3660  # ten years of days in one /days answer
DEFAULT_RANGE_DAYS = 90  # what the status page's calendar shows
READERS_KEPT = 4  # idle results-DB connections kept per api-server worker
T = TypeVar("T")


def _today() -> dt.date:
    return dt.datetime.now(dt.timezone.utc).date()


def _db_errors_as_503(fn: Callable[..., T]) -> Callable[..., T]:
    """An unreachable results DB is the server's problem (503), not a missing resource."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except OperationalError as exc:
            raise HTTPException(503, f"results DB unreachable: {exc}".strip()) from None

    return wrapper


def _assets() -> dict[str, Path]:
    """The files the page may load, fixed at start: a request can name nothing else."""
    return {
        p.relative_to(STATIC).as_posix(): p
        for p in STATIC.rglob("*")
        if p.is_file() and p.suffix in (".js", ".css", ".html", ".svg")
    }


def create_app() -> FastAPI:
    """The app, reading the results DB of the site config's ``results_conn_id``."""
    # One hook per process, keeping a few read-only connections open between requests.
    db = ResultsDbHook(load_config().results_conn_id, keep_readers=READERS_KEPT)
    assets = _assets()
    app = FastAPI(
        title="Audio pipeline monitoring",
        description="Days, clips, transcripts, SLURM jobs and health of the daily audio "
        "transcription pipeline, from its results DB. Every route needs an "
        "Airflow login (the UI's session or `Authorization: Bearer <JWT from "
        "POST /auth/token>`) allowed to read the runs of `audio_pipeline_daily`.",
        version="1",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    # Starlette types handlers as taking any Exception; this one takes its LoginRequired.
    app.add_exception_handler(LoginRequired, login_redirect)  # type: ignore[arg-type]
    reader = [require_pipeline_reader]
    page = [Depends(page_access)]

    # -- pages -------------------------------------------------------------------------
    @app.get("/", dependencies=page, include_in_schema=False)
    def status_page() -> FileResponse:
        """The status page (``?day=YYYY-MM-DD`` opens that day)."""
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    @app.get("/static/{name:path}", dependencies=page, include_in_schema=False)
    def static_asset(name: str) -> FileResponse:
        if name not in assets:
            raise HTTPException(404, "no such asset")
        return FileResponse(assets[name], headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/openapi.json", dependencies=reader, include_in_schema=False)
    def openapi_schema() -> dict[str, Any]:
        return app.openapi()

    @app.get("/docs", dependencies=page, include_in_schema=False)
    def docs() -> Response:
        return get_swagger_ui_html(openapi_url="openapi.json", title=app.title)

    # -- API ---------------------------------------------------------------------------
    @app.get("/api/days", response_model=DayList, dependencies=reader, tags=["days"])
    @_db_errors_as_503
    def days(
        start: Annotated[
            dt.date | None,
            Query(description=f"first day (default: end - {DEFAULT_RANGE_DAYS - 1} days)"),
        ] = None,
        end: Annotated[dt.date | None, Query(description="last day (default: today, UTC)")] = None,
    ) -> DayList:
        """Every day of a range with its status (`not_run` when never recorded) and counts."""
        end = end or _today()
        start = start or end - dt.timedelta(days=DEFAULT_RANGE_DAYS - 1)
        if start > end:
            raise HTTPException(422, "start is after end")
        if (end - start).days >= MAX_RANGE_DAYS:
            raise HTTPException(422, f"at most {MAX_RANGE_DAYS} days per request")
        return DayList(
            start=start, end=end, days=[DaySummary(**row) for row in db.days_between(start, end)]
        )

    @app.get(
        "/api/days/{day}",
        response_model=DayDetail,
        dependencies=reader,
        tags=["days"],
        responses={404: {"description": "day never recorded"}},
    )
    @_db_errors_as_503
    def day_detail(day: dt.date) -> DayDetail:
        """One day in full: counts, failures by reason, audio/GPU seconds, real-time factor,
        throughput, every SLURM job of its steps (state, exit code, node, queue wait, run
        time), and per compute node the array indices and clips that ran there."""
        row = db.day_detail(day)
        if row is None:
            raise HTTPException(404, f"day {day} was never recorded")
        gpu = row["gpu_seconds"]
        nodes = node_counts(row["jobs"], row.pop("clips_by_node"))
        return DayDetail(**row, nodes=nodes, throughput=row["audio_seconds"] / gpu if gpu else None)

    @app.get("/api/days/{day}/clips", response_model=ClipPage, dependencies=reader, tags=["clips"])
    @_db_errors_as_503
    def day_clips(
        day: dt.date,
        status: Annotated[ClipStatus | None, Query()] = None,
        error_kind: Annotated[
            str | None, Query(description="e.g. corrupt, empty, silent, not_audio, too_long")
        ] = None,
        after: Annotated[
            str | None, Query(description="clip id the previous page ended with")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> ClipPage:
        """A day's clips in clip-id order, filtered by status / error kind, a page at a time
        (keyset pagination: stable while the day is being re-recorded)."""
        total, rows = db.day_clips(
            day, status=status, error_kind=error_kind, after=after, limit=limit
        )
        return ClipPage(
            day=day,
            total=total,
            clips=[Clip.model_validate(r) for r in rows],
            next_after=rows[-1]["clip_id"] if len(rows) == limit else None,
        )

    @app.get(
        "/api/clips/{clip_id:path}/transcript",
        response_model=Transcript,
        dependencies=reader,
        tags=["clips"],
        responses={404: {"description": "no transcript for this clip"}},
    )
    @_db_errors_as_503
    def transcript(
        clip_id: Annotated[
            str, PathParam(description="`<day>/<path at the source>`, as in the clips list")
        ],
    ) -> Transcript:
        """A clip's transcript with its segments (and words where aligned)."""
        row = db.transcript(clip_id)
        if row is None:
            raise HTTPException(404, f"no transcript for clip {clip_id!r}")
        return Transcript(**row)

    @app.get(
        "/api/health",
        response_model=Health,
        dependencies=reader,
        tags=["health"],
        responses={503: {"model": Health, "description": "results DB unreachable"}},
    )
    def health(
        response: Response,
        window: Annotated[
            int, Query(ge=1, le=MAX_RANGE_DAYS, description="days before today to check")
        ] = 7,
    ) -> Health:
        """Results DB reachable, last complete day, days missing or not complete among the
        last ``window`` days (today excluded: it is not over)."""
        today = _today()
        try:
            facts = db.health(today - dt.timedelta(days=window), today - dt.timedelta(days=1))
        except OperationalError as exc:
            response.status_code = 503
            return Health(results_db_reachable=False, window_days=window, error=str(exc).strip())
        return Health(results_db_reachable=True, window_days=window, **facts)

    @app.get(
        "/metrics",
        dependencies=reader,
        tags=["metrics"],
        response_class=Response,
        responses={
            200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}
        },
    )
    def prometheus_metrics() -> Response:
        """Prometheus metrics (text exposition format), fresh from the results DB."""
        return Response(metrics.render(db.metrics_snapshot), media_type=CONTENT_TYPE_LATEST)

    app.include_router(transcript_routes.router(db), dependencies=reader)
    return app
