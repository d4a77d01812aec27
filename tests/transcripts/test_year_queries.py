"""The query shapes that keep search and clip paging fast over a year, checked for results
against plain SQL on a month of small days: the newest-first window walk
(``search.newest_matches``), ranking bounded to the newest matches, and a day's clip pages."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from corpus import day_load, recorded_db

from hpc_pipeline.hooks.results_db import ResultsDbHook
from hpc_pipeline.transcripts import search
from support import use_results_db

FIRST = dt.date(2025, 6, 1)
GAP = {10, 11, 12}  # days never recorded: the walk counts calendar days


def month_day(k: int) -> dict[str, tuple[str, str] | None]:
    """Day ``k``: four clips saying "weather" (one of them failed), "rare" on days 0, 13 and
    29, the phrase "red apple" every third day, "apple red" (not the phrase) on the others."""
    clips: dict[str, tuple[str, str] | None] = {}
    for i in range(4):
        words = ["weather"] * (1 + (k * 7 + i * 3) % 5) + ["report"]
        if i == 0:
            words += ["red", "apple"] if k % 3 == 0 else ["apple", "red"]
        if i == 1 and k in (0, 13, 29):
            words.append("rare")
        clips[f"clip{i}.m4a"] = ("en", " ".join(words))
    clips["clip9.m4a"] = None
    return clips


DAYS = [FIRST + dt.timedelta(days=k) for k in range(30) if k not in GAP]


@pytest.fixture(scope="module")
def month_db(postgres: str) -> Iterator[str]:
    """A results DB holding :data:`DAYS`, recorded through ``record_day``."""
    loads = (day_load(day.isoformat(), month_day((day - FIRST).days)) for day in DAYS)
    with recorded_db("search_month", loads) as name:
        yield name


@pytest.fixture
def db(month_db: str) -> ResultsDbHook:
    use_results_db(month_db)
    return ResultsDbHook("audio_results_db")


def plain(cur: Any, q: str, first: dt.date, upper: str, want: int) -> list[dict[str, Any]]:
    """What the walk must return, by one plain query over the whole range."""
    params: dict[str, Any] = {}
    query = search.tsquery_sql(search.parse_query(q), params)
    cur.execute(
        f"""SELECT clip_id, ts_rank(search, {query}) AS rank FROM transcripts
             WHERE search @@ {query} AND clip_id >= %(lo)s AND clip_id < %(hi)s
             ORDER BY clip_id DESC LIMIT %(want)s""",
        {**params, "lo": first.isoformat(), "hi": upper, "want": want},
    )
    return cur.fetchall()


@pytest.mark.parametrize("q", ["weather", "rare", '"red apple"', "weath*", "apple -weather"])
@pytest.mark.parametrize("want", [1, 3, 7, 40, 500])
@pytest.mark.parametrize("wide", [60, 2])  # 2: windows over 2 days go through GIN alone
def test_the_window_walk_finds_the_newest_matches(
    db: ResultsDbHook, monkeypatch: pytest.MonkeyPatch, q: str, want: int, wide: int
) -> None:
    monkeypatch.setattr(search, "WIDE_WINDOW_DAYS", wide)
    params: dict[str, Any] = {"status": None, "language": None}
    query = search.tsquery_sql(search.parse_query(q), params)
    last = DAYS[-1] + dt.timedelta(days=1)
    with db.reading() as cur:
        for first, upper in (
            (FIRST, last.isoformat()),
            (FIRST + dt.timedelta(days=5), "2025-06-21"),  # a range ending in the gap's far side
            (FIRST, "2025-06-14/clip1.m4a"),  # below a clip id (a recent cursor)
        ):
            got = search.newest_matches(cur, query, params, first, upper, want)
            assert got == plain(cur, q, first, upper, want), (first, upper)


def test_ranking_is_bounded_to_the_newest_matches_and_says_so(
    db: ResultsDbHook, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search, "RANK_CANDIDATES", 6)
    with db.reading() as cur:
        page = search.search(cur, search.SearchRequest(q="weather", order="rank", limit=4))
        newest = plain(cur, "weather", FIRST, "2025-07-01", 6)
    ranked = sorted(newest, key=lambda h: (-h["rank"], h["clip_id"]))
    assert [h["clip_id"] for h in page["hits"]] == [h["clip_id"] for h in ranked[:4]]
    assert page["ranking"] == {
        "ranked": 6,
        "max_ranked": 6,
        "all_matches": False,
        "oldest_day": "2025-06-29",  # 4 matching clips a day: the 6 newest span two days
    }
    # the next page holds the rest of the 6, even after a newer day was recorded meanwhile
    db.record_day(day_load("2025-07-05", {"late.m4a": ("en", "weather " * 9)}))
    try:
        with db.reading() as cur:
            second = search.search(
                cur,
                search.SearchRequest(q="weather", order="rank", limit=4, after=page["next_after"]),
            )
            fresh = search.search(cur, search.SearchRequest(q="weather", order="rank", limit=1))
        assert [h["clip_id"] for h in second["hits"]] == [h["clip_id"] for h in ranked[4:]]
        assert second["next_after"] is None
        assert fresh["hits"][0]["clip_id"] == "2025-07-05/late.m4a"
    finally:
        with db.get_conn() as conn:
            conn.execute("DELETE FROM audio_clips WHERE day = '2025-07-05'")
            conn.execute("DELETE FROM slurm_jobs WHERE day = '2025-07-05'")
            conn.execute("DELETE FROM day_claims WHERE day = '2025-07-05'")
            conn.execute("DELETE FROM audio_days WHERE day = '2025-07-05'")
            conn.commit()


def test_ranking_covers_every_match_when_there_are_few(
    db: ResultsDbHook, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search, "RANK_CANDIDATES", 6)
    with db.reading() as cur:
        rare = search.search(cur, search.SearchRequest(q="rare", order="rank"))
        day = search.search(
            cur,
            search.SearchRequest(q="weather", order="rank", start=DAYS[3], end=DAYS[3]),
        )
    assert rare["ranking"] == {
        "ranked": 3,
        "max_ranked": 6,
        "all_matches": True,
        "oldest_day": "2025-06-01",
    }
    assert sorted(h["clip_id"][:10] for h in rare["hits"]) == [
        "2025-06-01",
        "2025-06-14",
        "2025-06-30",
    ]
    assert day["ranking"]["all_matches"] and day["ranking"]["ranked"] == 4
    ranks = [h["rank"] for h in day["hits"]]
    assert ranks == sorted(ranks, reverse=True) and ranks[0] > ranks[-1]


def test_newest_first_pages_walk_the_whole_range_in_order(db: ResultsDbHook) -> None:
    with db.reading() as cur:
        everything = plain(cur, '"red apple"', FIRST, "2025-07-01", 1000)
        seen, after = [], None
        while True:
            page = search.search(
                cur, search.SearchRequest(q='"red apple"', order="recent", limit=3, after=after)
            )
            assert page["ranking"] is None
            seen += [h["clip_id"] for h in page["hits"]]
            after = page["next_after"]
            if after is None:
                break
    assert seen == [h["clip_id"] for h in everything] and len(seen) == 9


def test_a_days_clip_pages_stay_in_the_day_and_in_order(db: ResultsDbHook) -> None:
    day = DAYS[5]
    total, first = db.day_clips(day, status=None, error_kind=None, after=None, limit=2)
    assert total == 5
    assert [c["clip_id"] for c in first] == [f"{day}/clip0.m4a", f"{day}/clip1.m4a"]
    _, rest = db.day_clips(day, status=None, error_kind=None, after=first[-1]["clip_id"], limit=9)
    assert [c["clip_id"][11:] for c in rest] == ["clip2.m4a", "clip3.m4a", "clip9.m4a"]
    total, failed = db.day_clips(day, status="failed", error_kind=None, after=None, limit=9)
    assert total == 1 and [c["clip_id"] for c in failed] == [f"{day}/clip9.m4a"]
    total, ok = db.day_clips(day, status="ok", error_kind=None, after=f"{day}/clip1.m4a", limit=9)
    assert total == 4 and [c["clip_id"][11:] for c in ok] == ["clip2.m4a", "clip3.m4a"]
    total, kind = db.day_clips(day, status=None, error_kind="corrupt", after=None, limit=9)
    assert total == 1 and [c["clip_id"][11:] for c in kind] == ["clip9.m4a"]
    assert db.day_clips(
        dt.date(2025, 6, 11), status=None, error_kind=None, after=None, limit=9
    ) == (
        0,
        [],
    )


class Counting:
    """A cursor that records the clip-id window of each query it runs."""

    def __init__(self, cur: Any) -> None:
        self.cur = cur
        self.windows: list[tuple[str, str]] = []

    def execute(self, sql: str, params: dict[str, Any]) -> None:
        self.windows.append((params["wlo"], params["whi"]))
        self.cur.execute(sql, params)

    def fetchall(self) -> list[dict[str, Any]]:
        return self.cur.fetchall()


def test_the_walk_sizes_its_windows_from_the_matches_seen(db: ResultsDbHook) -> None:
    upper = "2025-07-01"
    with db.reading() as cur:
        for q, want, windows in (
            ("weather", 4, [("2025-06-30", upper)]),  # a common word: the newest day only
            # 1 match on the newest day: 1.5 x 2 more days; none there (1 in 4 days): 12
            # days; none again (1 in 16): 48 days, clipped to the range's first day
            (
                "rare",
                3,
                [
                    ("2025-06-30", upper),
                    ("2025-06-27", "2025-06-30"),
                    ("2025-06-15", "2025-06-27"),
                    ("2025-06-01", "2025-06-15"),
                ],
            ),
            # none: windows 8x larger each time until the range ends
            ("apple -weather", 5, [("2025-06-30", upper), ("2025-06-22", "2025-06-30"), None]),
        ):
            counting = Counting(cur)
            params: dict[str, Any] = {"status": None, "language": None}
            query = search.tsquery_sql(search.parse_query(q), params)
            search.newest_matches(counting, query, params, FIRST, upper, want)
            assert len(counting.windows) == len(windows), (q, counting.windows)
            for seen, expected in zip(counting.windows, windows, strict=True):
                assert expected is None or seen == expected, (q, counting.windows)
            assert counting.windows[-1][0] >= FIRST.isoformat()


def test_multi_day_windows_cannot_walk_the_primary_key(db: ResultsDbHook) -> None:
    """A window of several days goes through the GIN index (ANDed with the day BRIN index
    when not wide): the planner, believing the newest days empty, walked every row of them
    through the primary key when it could."""

    class Explaining(Counting):
        plans: list[str] = []

        def execute(self, sql: str, params: dict[str, Any]) -> None:
            self.cur.execute("SET LOCAL enable_seqscan = off")
            self.cur.execute("EXPLAIN (FORMAT JSON) " + sql, params)
            self.plans.append(json.dumps(self.cur.fetchone()))
            super().execute(sql, params)

    params: dict[str, Any] = {"status": None, "language": None}
    query = search.tsquery_sql(search.parse_query("rare"), params)
    with db.reading() as cur:
        walk = Explaining(cur)
        search.newest_matches(walk, query, params, FIRST, "2025-07-01", 3)
    assert len(walk.plans) == 4  # 1 day, 3 days, 12 days, the rest (see the test above)
    for plan in walk.plans[1:]:
        assert "transcripts_pkey" not in plan and "transcripts_search" in plan, plan
