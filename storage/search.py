"""Full-text search over one user's image jobs and conversations, on SQLite (FTS5) and PostgreSQL (tsvector).

One interface, two dialects: a parsed Query (storage/query.py) and plain filters in, row ids with their sort keys
out, ranked (bm25 on SQLite, ts_rank on PostgreSQL, both as "lower is better") or by date. Every value, the match
expression included, is a bound parameter; the SQL text is made only of this module's constants. The owner is
always part of the WHERE clause: nothing here can reach another user's rows.
"""

# The SQL below is assembled from this module's own constants and "?" placeholders only; every value, the match
# expressions included, is a bound parameter. Hence the file-wide S608 (string-built SQL) exemption.
# ruff: noqa: S608
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from storage.connections import database, is_postgres
from storage.query import MARK_END, MARK_START, Query, Term, fts5_any, fts5_match, tsquery, tsquery_any

Order = Literal["relevance", "newest", "oldest"]
Key = tuple[Any, int]  # (score or time, id): where a page ends, for the next page's cursor
# Ranks are float8 on PostgreSQL (ts_rank gives a float4, which a cursor could not carry back exactly).
# Relative weights: a word in the prompt counts twice one in the negative prompt; the reasoning half the answer;
# a conversation's title twice one of its messages.
_JOB_BM25 = "bm25(imagejob_fts, 2.0, 1.0)"
_MESSAGE_BM25 = "bm25(message_fts, 1.0, 0.5)"
_TITLE_WEIGHT = 2.0
_PG_CONFIG = "'atelier'::regconfig"
_HEADLINE = f"StartSel={MARK_START}, StopSel={MARK_END}"
SNIPPET_TOKENS = 24


@dataclass(frozen=True)
class ImageFilters:
    """History filters; None leaves a filter out. Times are aware datetimes, `until` excluded."""

    since: dt.datetime | None = None
    until: dt.datetime | None = None
    model: str | None = None  # the model that ran, or the checkpoint asked for
    mode: str | None = None
    width: int | None = None
    height: int | None = None
    sampler: str | None = None
    seed: int | None = None  # the job's seed, or any of its images' seeds
    lora: str | None = None  # named in the prompt as <lora:NAME:weight>
    favourite: bool | None = None
    status: str | None = None
    collection_id: int | None = None  # checked to be the user's by the caller


@dataclass(frozen=True)
class ConversationFilters:
    """Conversation filters: active within [since, until) (created before until, last updated from since)."""

    since: dt.datetime | None = None
    until: dt.datetime | None = None
    favourite: bool | None = None


class _Sql:
    """SQL text with `?` placeholders and its parameters, written once for both databases."""

    def __init__(self) -> None:
        self.where: list[str] = []
        self.params: list[Any] = []

    def add(self, condition: str, *params: Any) -> None:
        self.where.append(condition)
        self.params.extend(params)

    def clause(self) -> str:
        return " AND ".join(self.where) if self.where else "TRUE"


def _run(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    if is_postgres():
        sql = sql.replace("?", "%s")  # the module's SQL holds no other "?" (values are all parameters)
    return list(database.execute_sql(sql, list(params)).fetchall())


def _time(value: dt.datetime) -> Any:
    """A time as the column holds it: SQLite keeps peewee's text form, UTC."""
    value = value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return value if is_postgres() else str(value)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _job_filters(sql: _Sql, user: str, f: ImageFilters) -> None:
    sql.add('j."user" = ?', user)
    if f.since is not None:
        sql.add("j.created_at >= ?", _time(f.since))
    if f.until is not None:
        sql.add("j.created_at < ?", _time(f.until))
    for column, value in (("mode", f.mode), ("width", f.width), ("height", f.height), ("sampler", f.sampler),
                          ("status", f.status)):
        if value is not None:
            sql.add(f"j.{column} = ?", value)
    if f.model is not None:
        sql.add("(j.model = ? OR j.checkpoint = ?)", f.model, f.model)
    if f.seed is not None:
        # Two indexed lookups (the job's seed, its images' seeds) rather than an OR that scans the user's jobs.
        sql.add('j.id IN (SELECT id FROM imagejob WHERE "user" = ? AND seed_used = ? '
                "UNION SELECT job_id FROM imagefile WHERE seed = ?)", user, f.seed, f.seed)
    if f.lora is not None:
        like = "ILIKE" if is_postgres() else "LIKE"  # SQLite's LIKE already ignores ASCII case
        sql.add(f"j.prompt {like} ? ESCAPE '\\'", f"%<lora:{_like_escape(f.lora)}:%")
    if f.favourite is not None:
        sql.add("j.favourite = ?", f.favourite)
    if f.collection_id is not None:
        sql.add("j.id IN (SELECT job_id FROM collectionitem WHERE collection_id = ?)", f.collection_id)


def _page(inner: str, params: list[Any], order: Order, after: Key | None, limit: int) -> list[Key]:
    """Rows of `inner` (selecting `key` and `id`) in `order`, after the cursor `after`, `limit` of them."""
    descending = order == "newest"
    sql = f"SELECT key, id FROM ({inner}) s"
    params = list(params)
    if after is not None:
        key = after[0]
        if isinstance(key, str) and is_postgres():  # a time, as the cursor carried it
            key = dt.datetime.fromisoformat(key)
        sql += f" WHERE (key, id) {'<' if descending else '>'} (?, ?)"
        params += [key, after[1]]
    direction = "DESC" if descending else "ASC"
    sql += f" ORDER BY key {direction}, id {direction} LIMIT ?"
    return [(key, ident) for key, ident in _run(sql, [*params, limit])]


def search_jobs(user: str, query: Query, filters: ImageFilters, order: Order, after: Key | None,
                limit: int) -> list[Key]:
    """The user's job ids matching `query` and `filters`, with their sort keys, one page."""
    sql = _Sql()
    _job_filters(sql, user, filters)
    pg = is_postgres()
    if query.excluded:
        if pg:
            sql.add(f"NOT (j.search @@ to_tsquery({_PG_CONFIG}, ?))", tsquery_any(query.excluded))
        else:
            sql.add("j.id NOT IN (SELECT rowid FROM imagejob_fts WHERE imagejob_fts MATCH ?)",
                    fts5_any(query.excluded))
    ranked = order == "relevance" and query.positive
    time_key = "j.created_at"
    if not query.positive:
        inner = f"SELECT {time_key} AS key, j.id AS id FROM imagejob j WHERE {sql.clause()}"
        return _page(inner, sql.params, "oldest" if order == "oldest" else "newest", after, limit)
    if pg:
        key = "(-ts_rank(j.search, q))::float8" if ranked else time_key
        inner = (f"SELECT {key} AS key, j.id AS id FROM imagejob j CROSS JOIN to_tsquery({_PG_CONFIG}, ?) q "
                 f"WHERE j.search @@ q AND {sql.clause()}")
        params = [tsquery(query.groups), *sql.params]
    else:
        key = _JOB_BM25 if ranked else time_key
        # CROSS JOIN: the match first, then each matching row by its id (never the user's rows one by one).
        inner = (f"SELECT {key} AS key, j.id AS id FROM imagejob_fts CROSS JOIN imagejob j "
                 f"ON j.id = imagejob_fts.rowid WHERE imagejob_fts MATCH ? AND {sql.clause()}")
        params = [fts5_match(query.groups), *sql.params]
    return _page(inner, params, order if ranked else ("oldest" if order == "oldest" else "newest"), after, limit)


def job_highlights(ids: Sequence[int], query: Query) -> dict[int, dict[str, str]]:
    """{job id: {"prompt": marked text, "negative_prompt": marked text}} for jobs matching the query's words."""
    if not ids or not query.positive:
        return {}
    marks = ", ".join("?" for _ in ids)
    if is_postgres():
        rows = _run(f"SELECT j.id, ts_headline({_PG_CONFIG}, j.prompt, q, ?), "
                    f"ts_headline({_PG_CONFIG}, j.negative_prompt, q, ?) FROM imagejob j "
                    f"CROSS JOIN to_tsquery({_PG_CONFIG}, ?) q WHERE j.id IN ({marks})",
                    [_HEADLINE + ", HighlightAll=true"] * 2 + [tsquery(query.groups), *ids])
    else:
        rows = _run(f"SELECT rowid, highlight(imagejob_fts, 0, ?, ?), highlight(imagejob_fts, 1, ?, ?) "
                    f"FROM imagejob_fts WHERE imagejob_fts MATCH ? AND rowid IN ({marks})",
                    [MARK_START, MARK_END] * 2 + [fts5_match(query.groups), *ids])
    return {row[0]: {"prompt": row[1], "negative_prompt": row[2]} for row in rows}


def _conversation_filters(sql: _Sql, user: str, f: ConversationFilters) -> None:
    sql.add('c."user" = ?', user)
    if f.since is not None:
        sql.add("c.updated_at >= ?", _time(f.since))
    if f.until is not None:
        sql.add("c.created_at < ?", _time(f.until))
    if f.favourite is not None:
        sql.add("c.favourite = ?", f.favourite)


def _excluded_conversations(sql: _Sql, terms: tuple[Term, ...], reasoning: bool) -> None:
    """Leave out conversations whose title or any message holds any of `terms`."""
    if is_postgres():
        sql.add(f"c.id NOT IN (SELECT m.conversation_id FROM message m WHERE m.search @@ to_tsquery({_PG_CONFIG}, ?))"
                f" AND NOT (c.search @@ to_tsquery({_PG_CONFIG}, ?))",
                tsquery_any(terms, "" if reasoning else "A"), tsquery_any(terms))
    else:
        sql.add("c.id NOT IN (SELECT m.conversation_id FROM message_fts CROSS JOIN message m "
                "ON m.id = message_fts.rowid WHERE message_fts MATCH ?) "
                "AND c.id NOT IN (SELECT rowid FROM conversation_fts WHERE conversation_fts MATCH ?)",
                fts5_any(terms, None if reasoning else ("content",)), fts5_any(terms))


def search_conversations(user: str, query: Query, filters: ConversationFilters, reasoning: bool, order: Order,
                         after: Key | None, limit: int) -> list[Key]:
    """The user's conversation ids whose title or any message matches, with their sort keys, one page."""
    sql = _Sql()
    _conversation_filters(sql, user, filters)
    if query.excluded:
        _excluded_conversations(sql, query.excluded, reasoning)
    time_key = "c.updated_at"
    by_time: Order = "oldest" if order == "oldest" else "newest"
    if not query.positive:
        inner = f"SELECT {time_key} AS key, c.id AS id FROM conversation c WHERE {sql.clause()}"
        return _page(inner, sql.params, by_time, after, limit)
    if is_postgres():
        messages = (f"SELECT m.conversation_id AS cid, (-ts_rank(m.search, q))::float8 AS score FROM message m "
                    f"CROSS JOIN to_tsquery({_PG_CONFIG}, ?) q JOIN conversation cm ON cm.id = m.conversation_id "
                    f"WHERE m.search @@ q AND cm.\"user\" = ?")
        titles = (f"SELECT c2.id AS cid, (-{_TITLE_WEIGHT} * ts_rank(c2.search, q))::float8 AS score "
                  f"FROM conversation c2 CROSS JOIN to_tsquery({_PG_CONFIG}, ?) q "
                  f"WHERE c2.search @@ q AND c2.\"user\" = ?")
        match_params = [tsquery(query.groups, "" if reasoning else "A"), user, tsquery(query.groups), user]
    else:
        messages = (f"SELECT m.conversation_id AS cid, {_MESSAGE_BM25} AS score FROM message_fts CROSS JOIN "
                    "message m ON m.id = message_fts.rowid CROSS JOIN conversation cm ON cm.id = m.conversation_id "
                    'WHERE message_fts MATCH ? AND cm."user" = ?')
        titles = (f"SELECT conversation_fts.rowid AS cid, {_TITLE_WEIGHT} * bm25(conversation_fts) AS score "
                  "FROM conversation_fts WHERE conversation_fts MATCH ?")
        match_params = [fts5_match(query.groups, None if reasoning else ("content",)), user,
                        fts5_match(query.groups)]
    key = "h.score" if order == "relevance" else time_key
    inner = (f"SELECT {key} AS key, c.id AS id FROM (SELECT cid, MIN(score) AS score FROM ({messages} UNION ALL "
             f"{titles}) u GROUP BY cid) h JOIN conversation c ON c.id = h.cid WHERE {sql.clause()}")
    return _page(inner, [*match_params, *sql.params], order if order == "relevance" else by_time, after, limit)


@dataclass
class ConversationMatch:
    """Where a conversation matched: its title marked, and its best message with a marked snippet."""

    title: str | None = None
    message_id: int | None = None
    field: str = "content"  # content | reasoning
    snippet: str = ""


def conversation_matches(ids: Sequence[int], query: Query, reasoning: bool) -> dict[int, ConversationMatch]:
    """For each conversation id, its marked title (when it matches) and its best matching message's snippet."""
    found: dict[int, ConversationMatch] = {i: ConversationMatch() for i in ids}
    if not ids or not query.positive:
        return found
    marks = ", ".join("?" for _ in ids)
    if is_postgres():
        titles = _run(f"SELECT c.id, ts_headline({_PG_CONFIG}, c.title, q, ?) FROM conversation c CROSS JOIN "
                      f"to_tsquery({_PG_CONFIG}, ?) q WHERE c.search @@ q AND c.id IN ({marks})",
                      [_HEADLINE + ", HighlightAll=true", tsquery(query.groups), *ids])
    else:
        titles = _run(f"SELECT rowid, highlight(conversation_fts, 0, ?, ?) FROM conversation_fts "
                      f"WHERE conversation_fts MATCH ? AND rowid IN ({marks})",
                      [MARK_START, MARK_END, fts5_match(query.groups), *ids])
    for cid, marked in titles:
        found[cid].title = marked
    for cid, message_id, content, reasoning_text in _best_messages(ids, query, reasoning):
        match = found[cid]
        if match.message_id is None:  # rows come best first
            match.message_id = message_id
            in_content = MARK_START in content or not reasoning
            match.field = "content" if in_content else "reasoning"
            match.snippet = content if in_content else reasoning_text
    return found


def _best_messages(ids: Sequence[int], query: Query, reasoning: bool) -> list[tuple[Any, ...]]:
    """(conversation id, message id, marked content snippet, marked reasoning snippet), best match first."""
    marks = ", ".join("?" for _ in ids)
    if is_postgres():
        options = _HEADLINE + ", MaxFragments=2, MaxWords=24, MinWords=8, FragmentDelimiter=…"
        return _run(f"SELECT m.conversation_id, m.id, ts_headline({_PG_CONFIG}, m.content, q, ?), "
                    f"ts_headline({_PG_CONFIG}, m.reasoning, q, ?) FROM message m CROSS JOIN "
                    f"to_tsquery({_PG_CONFIG}, ?) q WHERE m.search @@ q AND m.conversation_id IN ({marks}) "
                    "ORDER BY ts_rank(m.search, q) DESC, m.id",
                    [options, options, tsquery(query.groups, "" if reasoning else "A"), *ids])
    return _run(f"SELECT m.conversation_id, m.id, snippet(message_fts, 0, ?, ?, '…', {SNIPPET_TOKENS}), "
                f"snippet(message_fts, 1, ?, ?, '…', {SNIPPET_TOKENS}) FROM message_fts CROSS JOIN message m "
                f"ON m.id = message_fts.rowid WHERE message_fts MATCH ? AND m.conversation_id IN ({marks}) "
                f"ORDER BY {_MESSAGE_BM25}, m.id",
                [MARK_START, MARK_END, MARK_START, MARK_END,
                 fts5_match(query.groups, None if reasoning else ("content",)), *ids])
