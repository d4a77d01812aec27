"""Full-text search against real PostgreSQL, on transcripts loaded through ``record_day``."""

from __future__ import annotations

import datetime as dt
import shutil
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from corpus import DAYS, day_load

from hpc_pipeline.hooks.results_db import ResultsDbHook
from hpc_pipeline.results import schema
from hpc_pipeline.transcripts.search import (
    MAX_QUERY_CHARS,
    BadQuery,
    SearchRequest,
    parse_query,
    search,
)
from support import create_db, drop_db, one, use_results_db


def run(hook: ResultsDbHook, q: str, **kw: Any) -> dict[str, Any]:
    with hook.reading() as cur:
        return search(cur, SearchRequest(q=q, **kw))


def ids(page: dict[str, Any]) -> list[str]:
    return [h["clip_id"] for h in page["hits"]]


def test_words_are_stemmed_and_ranked(hook: ResultsDbHook) -> None:
    page = run(hook, "mention")  # stemmed: finds "mentioned"
    assert sorted(ids(page)) == ["2025-03-01/a.m4a", "2025-03-02/a.m4a"]
    ranked = run(hook, "climate")
    # every English transcript saying climate; most occurrences first, clip id on ties
    assert ids(ranked)[:2] == ["2025-03-02/b.m4a", "2025-03-01/a.m4a"]
    assert set(ids(ranked)) == {
        "2025-03-01/a.m4a",
        "2025-03-01/b.m4a",
        "2025-03-02/a.m4a",
        "2025-03-02/b.m4a",
    }
    ranks = [h["rank"] for h in ranked["hits"]]
    assert ranks == sorted(ranks, reverse=True) and ranks[0] > ranks[-1]


def test_phrase_prefix_exclusion_and_or(hook: ResultsDbHook) -> None:
    phrase = run(hook, '"climate change"')  # "a change of climate" is not the phrase
    assert sorted(ids(phrase)) == ["2025-03-01/a.m4a", "2025-03-02/b.m4a"]
    assert "<->" in phrase["tsquery"]
    assert sorted(ids(run(hook, "transcri*"))) == ["2025-03-01/c.m4a", "2025-03-02/a.m4a"]
    assert ids(run(hook, "climate -change -mention")) == []
    assert sorted(ids(run(hook, "budgets or weather"))) == ["2025-03-01/b.m4a", "2025-03-01/c.m4a"]
    assert ids(run(hook, "clim* -weather", order="recent")) == [
        "2025-03-02/b.m4a",
        "2025-03-02/a.m4a",
        "2025-03-01/a.m4a",
    ]


def test_filters_by_day_range_status_and_language(hook: ResultsDbHook) -> None:
    first = dt.date(2025, 3, 1)
    assert sorted(ids(run(hook, "climate", start=first, end=first))) == [
        "2025-03-01/a.m4a",
        "2025-03-01/b.m4a",
    ]
    assert ids(run(hook, "climate", start=dt.date(2025, 3, 2))) == [
        "2025-03-02/b.m4a",
        "2025-03-02/a.m4a",
    ]
    assert ids(run(hook, "climate", end=dt.date(2025, 2, 28))) == []
    assert ids(run(hook, "klimawandel", language="de")) == ["2025-03-01/e.m4a"]
    assert ids(run(hook, "klimawandel", language="en")) == []
    assert ids(run(hook, "climate", status="failed")) == []


def test_keyset_pages_cover_every_match_once(hook: ResultsDbHook) -> None:
    for order in ("rank", "recent"):
        everything = ids(run(hook, "climate", order=order, limit=100))
        seen, after = [], None
        while True:
            page = run(hook, "climate", order=order, limit=1, after=after)
            seen += ids(page)
            after = page["next_after"]
            if after is None:
                break
        assert seen == everything and len(everything) == 4, order


def test_snippets_mark_the_matched_words(hook: ResultsDbHook) -> None:
    (hit,) = run(hook, '"climate change"', start=dt.date(2025, 3, 2))["hits"]
    assert hit["day"] == dt.date(2025, 3, 2) and hit["language"] == "en"
    marked = [p["text"] for p in hit["snippet"] if p["match"]]
    assert marked and {m.lower() for m in marked} <= {"climate", "change"}
    assert "".join(p["text"] for p in hit["snippet"]).startswith("Climate, climate change")


@pytest.mark.parametrize(
    "q, reason",
    [
        ("", "empty"),
        ("   ", "empty"),
        ("x" * (MAX_QUERY_CHARS + 1), "characters long"),
        ('"climate change', "unbalanced double quote"),
        ('""', "empty phrase"),
        ("c*", "prefix"),
        ("cl_*", "prefix"),
        ("the and", "stop words"),
    ],
)
def test_bad_queries_say_why(hook: ResultsDbHook, q: str, reason: str) -> None:
    with pytest.raises(BadQuery, match=reason):
        run(hook, q)


def test_bad_ranges_and_cursors_say_why(hook: ResultsDbHook) -> None:
    with pytest.raises(BadQuery, match="backwards"):
        run(hook, "climate", start=dt.date(2025, 3, 2), end=dt.date(2025, 3, 1))
    with pytest.raises(BadQuery, match="cursor"):
        run(hook, "climate", after="not-a-cursor")
    rank_cursor = run(hook, "climate", limit=1)["next_after"]
    with pytest.raises(BadQuery, match="order=recent"):
        run(hook, "climate", order="recent", after=rank_cursor)


def test_sql_text_in_a_query_is_only_searched_for(
    hook: ResultsDbHook, corpus_db: dict[str, str]
) -> None:
    for q in (
        "'; DROP TABLE transcripts; --",
        "o'brien's",
        "drop table) || (1=1",
        "climate:& !change | (x",
        "\\x00 %s %(web)s",
    ):
        parse_query(q)
        run(hook, q)  # no error: the text is data, never SQL or tsquery syntax
    assert ids(run(hook, "O'Brien's")) == ["2025-03-02/c.m4a"]
    with pytest.raises(BadQuery, match="prefix"):  # tsquery syntax is not passed through
        run(hook, "climate:* & !change")
    with psycopg.connect(corpus_db["dsn"]) as conn:
        assert one(conn, "SELECT count(*) FROM transcripts")[0] == sum(
            v is not None for d in DAYS.values() for v in d.values()
        )


def test_migration_indexes_an_existing_database(
    postgres: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A results DB at migration 0004 with transcripts in it gets the search column and
    index from 0005 and the day BRIN index from 0006, and the old transcripts are
    found."""
    name = f"search_old_{uuid.uuid4().hex[:8]}"
    create_db(name)
    try:
        use_results_db(name)
        old = tmp_path / "migrations"
        old.mkdir()
        for path in sorted(schema.MIGRATIONS_DIR.glob("000[1-4]_*.sql")):
            shutil.copy(path, old)
        monkeypatch.setattr(schema, "MIGRATIONS_DIR", old)
        hook = ResultsDbHook("audio_results_db")
        assert hook.migrate() == [p.stem for p in sorted(old.glob("*.sql"))]
        hook.record_day(day_load("2025-03-01"))
        monkeypatch.undo()
        use_results_db(name)
        assert hook.migrate() == ["0005_transcript_search", "0006_transcripts_day_brin"]
        assert sorted(ids(run(hook, "climate"))) == ["2025-03-01/a.m4a", "2025-03-01/b.m4a"]
        with psycopg.connect(f"{postgres}/{name}") as conn:
            conn.execute("SET enable_seqscan = off")  # 4 rows: make the planner show the index
            (plan,) = one(
                conn,
                "EXPLAIN (FORMAT JSON) SELECT clip_id FROM transcripts "
                "WHERE search @@ websearch_to_tsquery('english', 'climate')",
            )
            assert "transcripts_search" in str(plan), plan
            (am,) = one(
                conn,
                "SELECT a.amname FROM pg_class c JOIN pg_am a ON a.oid = c.relam "
                "WHERE c.relname = 'transcripts_day_brin'",
            )
            assert am == "brin"
        # re-recording a day keeps the generated column in step with the text
        hook.record_day(day_load("2025-03-01"))
        assert len(ids(run(hook, "budgets"))) == 1
    finally:
        drop_db(name)
