"""Full-text search over transcripts: query validation, then parameterized SQL.

The user's text never becomes SQL: it is parsed here into the part PostgreSQL's
``websearch_to_tsquery`` reads (words, ``"phrases"``, ``-excluded``, ``or``) and prefix terms
(``transcri*``, each checked to be letters and digits, given to ``to_tsquery`` as ``word:*``),
all passed as bind parameters.

Matches are found newest day first, a window of days at a time (:func:`newest_matches`): a
window's rows come from the primary key walked through one day, or the GIN index's matches
intersected with a BRIN index over the day prefix of clip ids (migration 0006), and the next
window is sized from the matches per day seen so far, so a common word stops after a day
and a rare one spans the year in a query or two. ``order=recent`` pages through them;
``order=rank`` ranks (``ts_rank``) the newest :data:`RANK_CANDIDATES` matches of the day
range, all of them when there are no more (rare words, most phrases, short ranges); the
response's ``ranking`` says which it was. Ranking every match of a common word over a year
would read hundreds of thousands of rows per page (6.5 s p95 at 161 days,
bench/RESULTS.md). Pages use keyset cursors; the ``ts_headline`` snippet is computed for the
page's rows only.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Literal

TS_CONFIG = "english"  # must match migration 0005's generated column
MAX_QUERY_CHARS = 200
MAX_PREFIXES = 5
MIN_PREFIX_CHARS = 2
RANK_CANDIDATES = 1000  # order=rank ranks at most this many matches: the newest ones
WIDE_WINDOW_DAYS = 60  # a wider window of the walk is read through the GIN index alone
Order = Literal["rank", "recent"]
START_SEL, STOP_SEL = "\x02", "\x03"  # cannot occur in transcripts: split into fragments
_HEADLINE_OPTS = (
    f"StartSel={START_SEL}, StopSel={STOP_SEL}, MaxWords=24, MinWords=10, "
    'MaxFragments=2, FragmentDelimiter=" … "'
)
_TOKEN = re.compile(r'"([^"]*)"|(\S+)')
_WORD = re.compile(r"[^\W_]+")


class BadQuery(ValueError):
    """A search request that cannot run; the message says why (the API's 400)."""


@dataclass(frozen=True)
class ParsedQuery:
    websearch: str  # for websearch_to_tsquery; "" when only prefixes
    prefixes: tuple[str, ...]  # lower-cased, without the trailing '*'


def parse_query(q: str) -> ParsedQuery:
    """Split ``q`` into websearch syntax and prefix terms, or raise :class:`BadQuery`."""
    q = q.strip()
    if not q:
        raise BadQuery("the query is empty")
    if len(q) > MAX_QUERY_CHARS:
        raise BadQuery(f"the query is {len(q)} characters long; at most {MAX_QUERY_CHARS}")
    if q.count('"') % 2:
        raise BadQuery('unbalanced double quote: a phrase is "between two quotes"')
    if any(ch in q for ch in (START_SEL, STOP_SEL, "\x00")):
        raise BadQuery("the query holds control characters")
    words: list[str] = []
    prefixes: list[str] = []
    for m in _TOKEN.finditer(q):
        phrase, word = m.group(1), m.group(2)
        if phrase is not None:
            if not phrase.strip():
                raise BadQuery('an empty phrase ""')
            words.append(f'"{phrase}"')
        elif word.endswith("*") and not word.startswith("-"):
            stem = word.rstrip("*")
            if not _WORD.fullmatch(stem) or len(stem) < MIN_PREFIX_CHARS:
                raise BadQuery(
                    f"prefix {word!r}: put * after at least {MIN_PREFIX_CHARS} "
                    "letters or digits (e.g. transcri*)"
                )
            prefixes.append(stem.lower())
        else:
            words.append(word)
    if len(prefixes) > MAX_PREFIXES:
        raise BadQuery(f"at most {MAX_PREFIXES} prefix terms")
    return ParsedQuery(" ".join(words), tuple(prefixes))


def tsquery_sql(parsed: ParsedQuery, params: dict[str, Any]) -> str:
    """The tsquery expression for ``parsed``: fixed SQL text, the values added to ``params``.

    Prefix terms are ANDed with the rest."""
    params["cfg"] = TS_CONFIG
    parts = []
    if parsed.websearch:
        params["web"] = parsed.websearch
        parts.append("websearch_to_tsquery(%(cfg)s::regconfig, %(web)s)")
    for i, prefix in enumerate(parsed.prefixes):
        params[f"prefix{i}"] = f"{prefix}:*"
        parts.append(f"to_tsquery(%(cfg)s::regconfig, %(prefix{i})s)")
    return "(" + " && ".join(parts) + ")"


@dataclass(frozen=True)
class SearchRequest:
    q: str
    start: dt.date | None = None
    end: dt.date | None = None
    status: str | None = None
    language: str | None = None
    order: Order = "rank"
    limit: int = 20
    after: str | None = None


def encode_cursor(order: Order, hit: dict[str, Any], upper: str) -> str:
    """``upper``: the clip-id bound (exclusive) the ranked candidates were taken below, so
    that a day recorded between two pages does not change the set being paged through."""
    key = [hit["rank"], hit["clip_id"], upper] if order == "rank" else [hit["clip_id"]]
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode()


def decode_cursor(order: Order, after: str) -> list[Any]:
    try:
        key = json.loads(base64.urlsafe_b64decode(after.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise BadQuery("after: not a cursor this API returned (next_after)") from None
    ok = (
        order == "rank"
        and isinstance(key, list)
        and len(key) == 3
        and isinstance(key[0], (int, float))
        and isinstance(key[1], str)
        and isinstance(key[2], str)
    ) or (order == "recent" and isinstance(key, list) and len(key) == 1 and isinstance(key[0], str))
    if not ok:
        raise BadQuery(f"after: not a cursor of order={order} (next_after)")
    try:
        dt.date.fromisoformat(key[-1][:10])
    except ValueError:
        raise BadQuery("after: not a cursor this API returned (next_after)") from None
    return key


def split_snippet(headline: str) -> list[dict[str, Any]]:
    """``ts_headline`` output as fragments ``{text, match}``: the page renders them as text,
    never as HTML."""
    parts: list[dict[str, Any]] = []
    for i, piece in enumerate(re.split(f"[{START_SEL}{STOP_SEL}]", headline)):
        if piece:
            parts.append({"text": piece, "match": i % 2 == 1})
    return parts


def newest_matches(
    cur: Any,
    query: str,
    params: dict[str, Any],
    first: dt.date,
    upper: str,
    want: int,
) -> list[dict[str, Any]]:
    """Up to ``want`` matches ``{clip_id, rank}`` with ``first`` <= day and clip id <
    ``upper``, newest first, found a window of days at a time.

    The first window is the newest day; the next one is sized from the matches per day seen
    so far (1.5x the days they predict), or 8x the last when none were seen. Each window is
    one query bounded by its days, written so that PostgreSQL can only take a plan bounded
    by the window too, whatever its estimates (it expects a rare word 10 times as often as
    it occurs, and the newest days, past the last ANALYZE's statistics, look empty):

    - one day: the clip-id range, in clip-id order, so that the primary key can be walked
      backwards through the day and stop at the page (a common word: a few hundred rows);
    - 2 to :data:`WIDE_WINDOW_DAYS` days: the day range on ``left(clip_id, 10)``, which only
      the BRIN index of migration 0006 serves, ANDed with the GIN index's matches; the
      window's matches are sorted (a walk through days of sparse matches read every row);
    - wider (the matches are sparse): the GIN index alone, its few matches outside the
      window filtered out (the BRIN bitmap of most of a year cost 0.2 s).
    """
    found: list[dict[str, Any]] = []
    day = dt.date.fromisoformat(upper[:10])
    if upper == day.isoformat():  # a day bound: the window ends the day before
        day -= dt.timedelta(days=1)
    span, walked = 1, 0
    while day >= first and len(found) < want:
        lo = first if span > (day - first).days else day - dt.timedelta(days=span - 1)
        days = (day - lo).days + 1
        if days == 1:
            key, bounds = "t.clip_id", "t.clip_id >= %(wlo)s::text AND t.clip_id < %(whi)s::text"
        else:
            key = "(t.clip_id || '')"  # no index serves it: neither the range nor the order
            bounds = f"{key} >= %(wlo)s::text AND {key} < %(whi)s::text"
            if days <= WIDE_WINDOW_DAYS:
                bounds += " AND left(t.clip_id, 10) BETWEEN %(wlo)s::text AND %(dhi)s::text"
        cur.execute(
            f"""SELECT t.clip_id, ts_rank(t.search, {query}) AS rank
                  FROM transcripts t
                 WHERE t.search @@ {query} AND {bounds}
                   AND (%(language)s::text IS NULL OR t.language = %(language)s::text)
                   AND (%(status)s::text IS NULL OR EXISTS (
                        SELECT FROM audio_clips c
                         WHERE c.clip_id = t.clip_id AND c.status = %(status)s::text))
                 ORDER BY {key} DESC LIMIT %(want)s""",
            {
                **params,
                "wlo": lo.isoformat(),
                "whi": upper,
                "dhi": day.isoformat(),
                "want": want - len(found),
            },
        )
        found += cur.fetchall()
        walked += days
        upper, day = lo.isoformat(), lo - dt.timedelta(days=1)
        per_day = len(found) / walked
        need = want - len(found)
        span = math.ceil(1.5 * need / per_day) if per_day else span * 8
    return found


def search(cur: Any, req: SearchRequest) -> dict[str, Any]:
    """One page of matches for ``req`` on a read cursor (dict rows); raises BadQuery."""
    if req.start and req.end and req.start > req.end:
        raise BadQuery(f"the day range is backwards: start {req.start} is after end {req.end}")
    parsed = parse_query(req.q)
    params: dict[str, Any] = {
        "status": req.status,
        "language": req.language,
        "opts": _HEADLINE_OPTS,
    }
    query = tsquery_sql(parsed, params)
    key = decode_cursor(req.order, req.after) if req.after else None
    # Every query here is bounded by its window; JIT compiling one (0.15 s seen on the year
    # DB when the planner overestimates a window) would cost more than running it.
    cur.execute("SET LOCAL jit = off")
    # Never a sequential scan of the year: a window the planner misjudges as dense (a phrase
    # of common words) goes through the indexes, bounded by its window.
    cur.execute("SET LOCAL enable_seqscan = off")
    cur.execute(
        f"""SELECT numnode({query}) AS nodes, {query}::text AS tsquery,
                   (SELECT min(day) FROM audio_days) AS first,
                   (SELECT max(day) FROM audio_days) AS last""",
        params,
    )
    probe = cur.fetchone()
    if not probe["nodes"]:
        raise BadQuery(
            "the query holds only common words that are not indexed (stop words "
            "such as 'the', 'and'); add a more specific word"
        )
    out: dict[str, Any] = {"q": req.q, "tsquery": probe["tsquery"], "order": req.order}
    first = max(filter(None, (req.start, probe["first"])), default=None)
    last = min(filter(None, (req.end, probe["last"])), default=None)
    upper = (last + dt.timedelta(days=1)).isoformat() if last else ""
    found: list[dict[str, Any]] = []
    if req.order == "rank":
        upper = key[2] if key else upper
        if first and upper:
            found = newest_matches(cur, query, params, first, upper, RANK_CANDIDATES + 1)
        out["ranking"] = {
            "ranked": min(len(found), RANK_CANDIDATES),
            "max_ranked": RANK_CANDIDATES,
            "all_matches": len(found) <= RANK_CANDIDATES,
            "oldest_day": found[:RANK_CANDIDATES][-1]["clip_id"][:10] if found else None,
        }
        found = sorted(found[:RANK_CANDIDATES], key=lambda h: (-h["rank"], h["clip_id"]))
        if key:
            found = [
                h
                for h in found
                if h["rank"] < key[0] or (h["rank"] == key[0] and h["clip_id"] > key[1])
            ]
    else:
        if key:
            upper = min(upper, key[0]) if upper else key[0]
        if first and upper:
            found = newest_matches(cur, query, params, first, upper, req.limit + 1)
        out["ranking"] = None
    page, more = found[: req.limit], len(found) > req.limit
    # The snippet is computed for the page's rows only.
    rows: dict[str, dict[str, Any]] = {}
    if page:
        cur.execute(
            f"""SELECT t.clip_id, c.day, c.status, t.language, c.duration_s,
                       ts_headline(%(cfg)s::regconfig, t.text, {query}, %(opts)s) AS headline
                  FROM transcripts t JOIN audio_clips c ON c.clip_id = t.clip_id
                 WHERE t.clip_id = ANY(%(ids)s::text[])""",
            {**params, "ids": [h["clip_id"] for h in page]},
        )
        rows = {r["clip_id"]: r for r in cur.fetchall()}
    hits = [
        {
            **{k: v for k, v in rows[h["clip_id"]].items() if k != "headline"},
            "rank": h["rank"],
            "snippet": split_snippet(rows[h["clip_id"]]["headline"]),
        }
        for h in page
        if h["clip_id"] in rows  # a clip re-recorded between the two reads: left out
    ]
    out["hits"] = hits
    out["next_after"] = encode_cursor(req.order, page[-1], upper) if more else None
    return out
