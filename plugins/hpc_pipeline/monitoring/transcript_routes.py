"""The transcripts routes of the monitoring app: full-text search and export for analysis.

A request that cannot run (empty or too long query, unbalanced quote, day range backwards,
unknown format) is answered 400 with the reason, before any SQL runs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import StreamingResponse
from psycopg import OperationalError

from hpc_pipeline.hooks.results_db import ResultsDbHook
from hpc_pipeline.monitoring.models import ClipStatus, SearchPage
from hpc_pipeline.transcripts import export, search

MAX_EXPORT_DAYS = 366
BAD_REQUEST: dict[int | str, dict[str, Any]] = {
    400: {"description": "the request cannot run; `detail` says why"}
}


def _check_range(start: dt.date | None, end: dt.date | None) -> None:
    if start and end and start > end:
        raise HTTPException(400, f"the day range is backwards: start {start} is after end {end}")


def router(db: ResultsDbHook) -> APIRouter:
    """The routes, reading ``db``; the app adds its login dependency when including them."""
    api = APIRouter()

    @api.get("/api/search", response_model=SearchPage, tags=["transcripts"], responses=BAD_REQUEST)
    def search_transcripts(
        q: Annotated[
            str,
            Query(
                description=(
                    'words (all must match), "a phrase", -excluded, `or`, prefix*; stemmed '
                    f"English; at most {search.MAX_QUERY_CHARS} characters"
                )
            ),
        ],
        start: Annotated[dt.date | None, Query(description="first day")] = None,
        end: Annotated[dt.date | None, Query(description="last day")] = None,
        status: Annotated[ClipStatus | None, Query()] = None,
        language: Annotated[str | None, Query(max_length=16)] = None,
        order: Annotated[
            search.Order,
            Query(
                description="recent: newest first; rank: best ts_rank first among the "
                f"newest {search.RANK_CANDIDATES} matches of the day range (all of them when "
                "there are no more; `ranking` in the response says which): narrow the day "
                "range to rank older matches"
            ),
        ] = "recent",
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        after: Annotated[
            str | None, Query(max_length=512, description="next_after of the previous page")
        ] = None,
    ) -> dict[str, Any]:
        """Transcripts matching a full-text query, newest first or ranked, with a highlighted
        snippet, a page at a time (keyset paging). Ranking scores the newest
        ``ranking.max_ranked`` matches of the day range, so that a common word over a year
        answers in milliseconds; ``ranking.all_matches`` is false when there were more."""
        req = search.SearchRequest(
            q=q,
            start=start,
            end=end,
            status=status,
            language=language,
            order=order,
            limit=limit,
            after=after,
        )
        try:
            with db.reading() as cur:
                return search.search(cur, req)
        except search.BadQuery as exc:
            raise HTTPException(400, str(exc)) from None
        except OperationalError as exc:
            raise HTTPException(503, f"results DB unreachable: {exc}".strip()) from None

    @api.get(
        "/api/export",
        tags=["transcripts"],
        response_class=StreamingResponse,
        responses={
            **BAD_REQUEST,
            200: {
                "description": "a Parquet file, or JSON Lines: one row per clip, or per "
                "segment with `segments=1`, in clip-id order",
                "content": {t: {} for t in export.MEDIA_TYPES.values()},
            },
        },
    )
    def export_range(
        start: Annotated[dt.date, Query(description="first day")],
        end: Annotated[dt.date, Query(description="last day")],
        format: Annotated[str, Query(description="parquet or jsonl")] = "parquet",
        segments: Annotated[
            bool, Query(description="one row per transcript segment instead of per clip")
        ] = False,
    ) -> StreamingResponse:
        """A day range of transcripts for pandas, Polars or DuckDB, streamed as it is read
        (the range is never held in memory)."""
        _check_range(start, end)
        if format not in export.FORMATS:
            raise HTTPException(400, f"format {format!r}: use parquet or jsonl")
        fmt: export.Format = "parquet" if format == "parquet" else "jsonl"
        if (end - start).days >= MAX_EXPORT_DAYS:
            raise HTTPException(400, f"at most {MAX_EXPORT_DAYS} days per export")

        def body() -> Iterator[bytes]:
            with db.reading() as cur:
                yield from export.stream(cur, start, end, fmt, segments)

        name = f"transcripts_{start}_{end}{'_segments' if segments else ''}.{format}"
        return StreamingResponse(
            body(),
            media_type=export.MEDIA_TYPES[format],
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    return api
