"""Full-text search over transcripts: query validation, then one parameterized SQL query.

The user's text never becomes SQL: it is parsed here into the part PostgreSQL's
``websearch_to_tsquery`` reads (words, ``"phrases"``, ``-excluded``, ``or``) and prefix terms
(``transcri*``, each checked to be letters and digits, given to ``to_tsquery`` as ``word:*``),
all passed as bind parameters. Matches come ranked (``ts_rank``) or newest first, a page at a
time with keyset paging, each with a ``ts_headline`` snippet computed for that page only.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

TS_CONFIG = "english"  # must match migration 0005's generated column
MAX_QUERY_CHARS = 200
MAX_PREFIXES = 5
MIN_PREFIX_CHARS = 2
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


def encode_cursor(order: Order, hit: dict[str, Any]) -> str:
    key = [hit["rank"], hit["clip_id"]] if order == "rank" else [hit["clip_id"]]
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode()


def decode_cursor(order: Order, after: str) -> list[Any]:
    try:
        key = json.loads(base64.urlsafe_b64decode(after.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise BadQuery("after: not a cursor this API returned (next_after)") from None
    ok = (
        order == "rank"
        and isinstance(key, list)
        and len(key) == 2
        and isinstance(key[0], (int, float))
        and isinstance(key[1], str)
    ) or (order == "recent" and isinstance(key, list) and len(key) == 1 and isinstance(key[0], str))
    if not ok:
        raise BadQuery(f"after: not a cursor of order={order} (next_after)")
    return key


def split_snippet(headline: str) -> list[dict[str, Any]]:
    """``ts_headline`` output as fragments ``{text, match}``: the page renders them as text,
    never as HTML."""
    parts: list[dict[str, Any]] = []
    for i, piece in enumerate(re.split(f"[{START_SEL}{STOP_SEL}]", headline)):
        if piece:
            parts.append({"text": piece, "match": i % 2 == 1})
    return parts


def search(cur: Any, req: SearchRequest) -> dict[str, Any]:
    """One page of matches for ``req`` on a read cursor (dict rows); raises BadQuery."""
    if req.start and req.end and req.start > req.end:
        raise BadQuery(f"the day range is backwards: start {req.start} is after end {req.end}")
    parsed = parse_query(req.q)
    params: dict[str, Any] = {
        "start": req.start,
        "end": req.end,
        "status": req.status,
        "language": req.language,
        "limit": req.limit,
        "opts": _HEADLINE_OPTS,
        # clip ids start with their day: a clip-id range lets the primary key serve the range
        "lo": req.start.isoformat() if req.start else None,
        "hi": (req.end + dt.timedelta(days=1)).isoformat() if req.end else None,
    }
    query = tsquery_sql(parsed, params)
    cur.execute(f"SELECT numnode({query}) AS nodes, {query}::text AS tsquery", params)
    probe = cur.fetchone()
    if not probe["nodes"]:
        raise BadQuery(
            "the query holds only common words that are not indexed (stop words "
            "such as 'the', 'and'); add a more specific word"
        )
    if req.order == "rank":
        order_by = "rank DESC, clip_id"
        keyset = "(rank < %(k0)s::real OR (rank = %(k0)s::real AND clip_id > %(k1)s))"
    else:
        order_by = "clip_id DESC"
        keyset = "clip_id < %(k0)s"
    if req.after:
        for i, value in enumerate(decode_cursor(req.order, req.after)):
            params[f"k{i}"] = value
    else:
        keyset = "true"
    # The snippet is computed for the page's rows only, after ranking and the LIMIT.
    cur.execute(
        f"""SELECT clip_id, day, status, language, duration_s, rank,
                   ts_headline(%(cfg)s::regconfig, text, {query}, %(opts)s) AS headline
              FROM (SELECT * FROM (
                      SELECT t.clip_id, c.day, c.status, t.language, c.duration_s, t.text,
                             ts_rank(t.search, {query}) AS rank
                        FROM transcripts t JOIN audio_clips c ON c.clip_id = t.clip_id
                       WHERE t.search @@ {query}
                         AND (%(start)s::date IS NULL OR c.day >= %(start)s::date)
                         AND (%(end)s::date IS NULL OR c.day <= %(end)s::date)
                         AND (%(lo)s::text IS NULL OR t.clip_id >= %(lo)s::text)
                         AND (%(hi)s::text IS NULL OR t.clip_id < %(hi)s::text)
                         AND (%(status)s::text IS NULL OR c.status = %(status)s::text)
                         AND (%(language)s::text IS NULL OR t.language = %(language)s::text)
                     ) m
                    WHERE {keyset} ORDER BY {order_by} LIMIT %(limit)s) page
             ORDER BY {order_by}""",
        params,
    )
    rows = cur.fetchall()
    hits = [
        {**{k: v for k, v in r.items() if k != "headline"}, "snippet": split_snippet(r["headline"])}
        for r in rows
    ]
    return {
        "q": req.q,
        "tsquery": probe["tsquery"],
        "order": req.order,
        "hits": hits,
        "next_after": encode_cursor(req.order, hits[-1]) if len(hits) == req.limit else None,
    }
