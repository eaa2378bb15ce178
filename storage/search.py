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
# Ranking scores every match before the best page can be taken: over a few thousand matches that alone costs more
# than a search may (bench/search.py: a word in 70 % of 100,000 prompts took 270 ms). Above this many matches (all
# users' rows, counted no further), a search asked for by relevance comes newest first instead, and says so.
RANK_AT_MOST = 3000
# A few rows of an FTS5 table by rowid: FTS5 would take `rowid IN (…)` as one lookup per id, each evaluating the
# whole match again (a prefix merges every word it starts: 3 ms each), so it reads the range once and the "+" keeps
# the list out of its hands: only the rows in it reach highlight() and snippet().
_FTS5_AMONG = "rowid BETWEEN ? AND ? AND +rowid IN ({marks})"
# Above RANK_AT_MOST matches, a page by date walks the user's rows in that order, a chunk at a time, and asks the
# index which of each chunk match (cost: the rows walked, not the matches); chunks grow while few match.
FIRST_CHUNK = 64
LAST_CHUNK = 16384


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


@dataclass(frozen=True)
class Found:
    """One page of row ids with their sort keys, and the order that gave them: "newest" where relevance was asked
    but more than RANK_AT_MOST rows matched (`ranked_at_most` is then RANK_AT_MOST, else None)."""

    keys: list[Key]
    order: Order
    ranked_at_most: int | None = None


def _by_time(order: Order) -> Order:
    return "oldest" if order == "oldest" else "newest"


def _count_at_most(sql: str, params: list[Any], cap: int) -> int:
    """How many rows `sql` selects, counted no further than cap + 1."""
    return int(_run(f"SELECT count(*) FROM ({sql} LIMIT ?) n", [*params, cap + 1])[0][0])


def _job_match_count(query: Query) -> int:
    """Jobs (every user's) matching the query's words, counted up to RANK_AT_MOST + 1: cheap, from the index."""
    if is_postgres():
        return _count_at_most(f"SELECT 1 FROM imagejob WHERE search @@ to_tsquery({_PG_CONFIG}, ?)",
                              [tsquery(query.groups)], RANK_AT_MOST)
    return _count_at_most("SELECT 1 FROM imagejob_fts WHERE imagejob_fts MATCH ?", [fts5_match(query.groups)],
                          RANK_AT_MOST)


def _matching_jobs(query: Query, ids: list[int]) -> set[int]:
    """Which of `ids` match the query (its words, none of its excluded words)."""
    if is_postgres():
        sql = f"SELECT id FROM imagejob WHERE id = ANY(?) AND search @@ to_tsquery({_PG_CONFIG}, ?)"
        params: list[Any] = [ids, tsquery(query.groups)]
        if query.excluded:
            sql += f" AND NOT (search @@ to_tsquery({_PG_CONFIG}, ?))"
            params.append(tsquery_any(query.excluded))
        return {row[0] for row in _run(sql, params)}
    match = fts5_match(query.groups)
    if query.excluded:
        match = f"({match}) NOT ({fts5_any(query.excluded)})"
    # A rowid range lets FTS5 read only that stretch of each word's list; the chunk's ids are close when its jobs
    # were made in the order of their dates (as they are, but for imported ones: then the range is wider, not wrong).
    rows = _run("SELECT rowid FROM imagejob_fts WHERE imagejob_fts MATCH ? AND rowid BETWEEN ? AND ?",
                [match, min(ids), max(ids)])
    return {row[0] for row in rows}


def _walk(inner: str, params: list[Any], order: Order, after: Key | None, limit: int,
          matching: Any) -> list[Key]:
    """Rows of `inner` (selecting `key` and `id`) in `order` from the cursor on, those `matching` keeps (a function
    of a chunk of ids), `limit` of them: a chunk at a time, each larger than the last while few match."""
    found: list[Key] = []
    size = FIRST_CHUNK
    while len(found) < limit:
        chunk = _page(inner, params, order, after, size)
        if not chunk:
            break
        kept = matching([ident for _, ident in chunk])
        found += [key for key in chunk if key[1] in kept][:limit - len(found)]
        if len(chunk) < size:
            break
        after = chunk[-1]
        size = min(size * 4, LAST_CHUNK)
    return found


def search_jobs(user: str, query: Query, filters: ImageFilters, order: Order, after: Key | None,
                limit: int) -> Found:
    """The user's job ids matching `query` and `filters`, with their sort keys, one page. Ranked when `order` is
    relevance and at most RANK_AT_MOST jobs match (or the cursor `after` continues a ranked search), else by date."""
    sql = _Sql()
    _job_filters(sql, user, filters)
    time_key = "j.created_at"
    if not query.positive:
        _exclude_jobs(sql, query.excluded)
        by_date = f"SELECT {time_key} AS key, j.id AS id FROM imagejob j WHERE {sql.clause()}"
        return Found(_page(by_date, sql.params, _by_time(order), after, limit), _by_time(order))
    # A ranked search's next page stays ranked (its cursor holds a score), however many match by then.
    if (after is None or order != "relevance") and _job_match_count(query) > RANK_AT_MOST:
        by_date = f"SELECT {time_key} AS key, j.id AS id FROM imagejob j WHERE {sql.clause()}"
        keys = _walk(by_date, sql.params, _by_time(order), after, limit, lambda ids: _matching_jobs(query, ids))
        return Found(keys, _by_time(order), RANK_AT_MOST if order == "relevance" else None)
    _exclude_jobs(sql, query.excluded)
    ranked = order == "relevance"
    if is_postgres():
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
    applied: Order = "relevance" if ranked else _by_time(order)
    return Found(_page(inner, params, applied, after, limit), applied)


def _exclude_jobs(sql: _Sql, excluded: tuple[Term, ...]) -> None:
    if not excluded:
        return
    if is_postgres():
        sql.add(f"NOT (j.search @@ to_tsquery({_PG_CONFIG}, ?))", tsquery_any(excluded))
    else:
        sql.add("j.id NOT IN (SELECT rowid FROM imagejob_fts WHERE imagejob_fts MATCH ?)", fts5_any(excluded))


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
                    f"FROM imagejob_fts WHERE imagejob_fts MATCH ? AND {_FTS5_AMONG.format(marks=marks)}",
                    [MARK_START, MARK_END] * 2 + [fts5_match(query.groups), min(ids), max(ids), *ids])
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


def _message_match_count(query: Query, reasoning: bool) -> int:
    """Messages (every user's) matching the query's words, counted up to RANK_AT_MOST + 1."""
    if is_postgres():
        return _count_at_most(f"SELECT 1 FROM message WHERE search @@ to_tsquery({_PG_CONFIG}, ?)",
                              [tsquery(query.groups, "" if reasoning else "A")], RANK_AT_MOST)
    return _count_at_most("SELECT 1 FROM message_fts WHERE message_fts MATCH ?",
                          [fts5_match(query.groups, None if reasoning else ("content",))], RANK_AT_MOST)


def _matching_conversations(query: Query, reasoning: bool, ids: list[int]) -> set[int]:
    """Which of the conversations `ids` have a title or a message matching the query's words."""
    marks = ", ".join("?" for _ in ids)
    if is_postgres():
        rows = _run(f"SELECT DISTINCT conversation_id FROM message WHERE conversation_id IN ({marks}) "
                    f"AND search @@ to_tsquery({_PG_CONFIG}, ?) UNION SELECT id FROM conversation "
                    f"WHERE id IN ({marks}) AND search @@ to_tsquery({_PG_CONFIG}, ?)",
                    [*ids, tsquery(query.groups, "" if reasoning else "A"), *ids, tsquery(query.groups)])
        return {row[0] for row in rows}
    low, high = _run(f"SELECT min(id), max(id) FROM message WHERE conversation_id IN ({marks})", ids)[0]
    found = set()
    if low is not None:  # a range of message ids, as for jobs: FTS5 reads only that stretch of each word's list
        found = {row[0] for row in _run(
            f"SELECT DISTINCT m.conversation_id FROM message_fts CROSS JOIN message m ON m.id = message_fts.rowid "
            f"WHERE message_fts MATCH ? AND message_fts.rowid BETWEEN ? AND ? AND m.conversation_id IN ({marks})",
            [fts5_match(query.groups, None if reasoning else ("content",)), low, high, *ids])}
    titles = _run(f"SELECT rowid FROM conversation_fts WHERE conversation_fts MATCH ? AND rowid IN ({marks})",
                  [fts5_match(query.groups), *ids])
    return found | {row[0] for row in titles}


def search_conversations(user: str, query: Query, filters: ConversationFilters, reasoning: bool, order: Order,
                         after: Key | None, limit: int) -> Found:
    """The user's conversation ids whose title or any message matches, with their sort keys, one page. Ranked as
    search_jobs ranks: by relevance when asked and at most RANK_AT_MOST messages match, else by date."""
    sql = _Sql()
    _conversation_filters(sql, user, filters)
    if query.excluded:
        _excluded_conversations(sql, query.excluded, reasoning)
    time_key = "c.updated_at"
    by_time = _by_time(order)
    by_date = f"SELECT {time_key} AS key, c.id AS id FROM conversation c WHERE {sql.clause()}"
    if not query.positive:
        return Found(_page(by_date, sql.params, by_time, after, limit), by_time)
    if (after is None or order != "relevance") and _message_match_count(query, reasoning) > RANK_AT_MOST:
        keys = _walk(by_date, sql.params, by_time, after, limit,
                     lambda ids: _matching_conversations(query, reasoning, ids))
        return Found(keys, by_time, RANK_AT_MOST if order == "relevance" else None)
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
    applied: Order = "relevance" if order == "relevance" else by_time
    return Found(_page(inner, [*match_params, *sql.params], applied, after, limit), applied)


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
                      f"WHERE conversation_fts MATCH ? AND {_FTS5_AMONG.format(marks=marks)}",
                      [MARK_START, MARK_END, fts5_match(query.groups), min(ids), max(ids), *ids])
    for cid, marked in titles:
        found[cid].title = marked
    for cid, message_id, content, reasoning_text in _best_messages(ids, query, reasoning):
        match = found[cid]
        if match.message_id is None:
            match.message_id = message_id
            in_content = MARK_START in content or not reasoning
            match.field = "content" if in_content else "reasoning"
            match.snippet = content if in_content else reasoning_text
    return found


def _best_messages(ids: Sequence[int], query: Query, reasoning: bool) -> list[tuple[Any, ...]]:
    """(conversation id, message id, marked content snippet, marked reasoning snippet) of each conversation's best
    matching message: the best found first, then only their snippets made (a snippet costs far more than a score)."""
    marks = ", ".join("?" for _ in ids)
    if is_postgres():
        q = tsquery(query.groups, "" if reasoning else "A")
        best = _run(f"SELECT DISTINCT ON (m.conversation_id) m.conversation_id, m.id FROM message m CROSS JOIN "
                    f"to_tsquery({_PG_CONFIG}, ?) q WHERE m.search @@ q AND m.conversation_id IN ({marks}) "
                    "ORDER BY m.conversation_id, ts_rank(m.search, q) DESC, m.id", [q, *ids])
        if not best:
            return []
        options = _HEADLINE + ", MaxFragments=2, MaxWords=24, MinWords=8, FragmentDelimiter=…"
        chosen = ", ".join("?" for _ in best)
        rows = _run(f"SELECT m.id, ts_headline({_PG_CONFIG}, m.content, q, ?), ts_headline({_PG_CONFIG}, m.reasoning, "
                    f"q, ?) FROM message m CROSS JOIN to_tsquery({_PG_CONFIG}, ?) q WHERE m.id IN ({chosen})",
                    [options, options, q, *(message for _, message in best)])
    else:
        match = fts5_match(query.groups, None if reasoning else ("content",))
        low, high = _run(f"SELECT min(id), max(id) FROM message WHERE conversation_id IN ({marks})", list(ids))[0]
        if low is None:
            return []
        scored = _run(f"SELECT m.conversation_id, m.id FROM message_fts CROSS JOIN message m ON m.id = "
                      f"message_fts.rowid WHERE message_fts MATCH ? AND message_fts.rowid BETWEEN ? AND ? AND "
                      f"m.conversation_id IN ({marks}) ORDER BY {_MESSAGE_BM25}, m.id", [match, low, high, *ids])
        best = list({cid: (cid, message) for cid, message in reversed(scored)}.values())  # each one's first
        if not best:
            return []
        chosen = [message for _, message in best]
        rows = _run(f"SELECT rowid, snippet(message_fts, 0, ?, ?, '…', {SNIPPET_TOKENS}), "
                    f"snippet(message_fts, 1, ?, ?, '…', {SNIPPET_TOKENS}) FROM message_fts WHERE message_fts MATCH ? "
                    f"AND {_FTS5_AMONG.format(marks=', '.join('?' for _ in chosen))}",
                    [MARK_START, MARK_END, MARK_START, MARK_END, match, min(chosen), max(chosen), *chosen])
    snippets = {row[0]: (row[1], row[2]) for row in rows}
    return [(cid, message, *snippets[message]) for cid, message in best if message in snippets]
