"""Search a user's image history and conversations: words, filters, ranked pages with a cursor, matches marked.

Always one user's own rows: `user` is a name, never None (an admin searches their own work too; issue 25 says
"never across users"). Bad filters raise InvalidRequest({field: message}); any text in the search box is an
answer, never an error (storage/query.py reads it).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from dataclasses import asdict
from typing import Any

from peewee import fn, prefetch

from contracts import MAX_SEED, MODES, InvalidRequest
from services.history import job_to_dict
from storage import search
from storage.models import Collection, Conversation, ImageFile, ImageJob, Message
from storage.query import Query, parse, segments, spelled

MAX_PAGE = 200
ORDERS = ("relevance", "newest", "oldest")
STATUSES = ("running", "done", "cancelled", "failed")
MAX_NAME_CHARS = 255
MAX_SIZE = 2**31 - 1


def _whole(value: Any, field: str, low: int, high: int) -> int:
    """An integer in [low, high] from an int, an integral float (gr.Number) or a numeric string."""
    try:
        number = float(value) if isinstance(value, str) else value
        if isinstance(number, bool) or not isinstance(number, int | float) or number != int(number):
            raise ValueError
        number = int(number)
    except (ValueError, OverflowError, TypeError):
        raise InvalidRequest({field: f"{field} must be a whole number, got {value!r}."}) from None
    if not low <= number <= high:
        raise InvalidRequest({field: f"{field} must be between {low} and {high}, got {number}."})
    return number


def _when(value: Any, field: str) -> dt.datetime | None:
    """An aware UTC time from a datetime, a date (its midnight, UTC) or an ISO 8601 text; None stays None."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise InvalidRequest({field: f"{field} must be a date or time in ISO 8601 (2026-05-01 or "
                                         f"2026-05-01T12:00:00Z), got {value!r}."}) from None
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time(), dt.UTC)
    if not isinstance(value, dt.datetime):
        raise InvalidRequest({field: f"{field} must be a date or time, got {value!r}."})
    return value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _choice(value: Any, field: str, choices: tuple[str, ...]) -> str | None:
    if value is None or value == "":
        return None
    if value not in choices:
        raise InvalidRequest({field: f"{field} must be one of {', '.join(choices)}, got {value!r}."})
    return str(value)


def _name(value: Any, field: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_NAME_CHARS:
        raise InvalidRequest({field: f"{field} must be a text of at most {MAX_NAME_CHARS} characters."})
    return value


def _flag(value: Any, field: str) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
        return value.lower() in ("true", "1", "yes")
    raise InvalidRequest({field: f"{field} must be true or false, got {value!r}."})


def _period(since: Any, until: Any) -> tuple[dt.datetime | None, dt.datetime | None]:
    start, end = _when(since, "since"), _when(until, "until")
    if start is not None and end is not None and start >= end:
        raise InvalidRequest({"until": "until must be later than since."})
    return start, end


def _size(value: Any, field: str) -> int | None:
    return None if value is None or value == "" else _whole(value, field, 1, MAX_SIZE)


class SearchService:
    """Full-text search with filters over one user's jobs and conversations (storage/search.py runs the SQL)."""

    def image_filters(self, user: str, **raw: Any) -> search.ImageFilters:
        """Checked filters from raw values (query parameters, Gradio inputs); InvalidRequest names a bad one."""
        unknown = set(raw) - {f for f in search.ImageFilters.__dataclass_fields__}
        if unknown:
            raise InvalidRequest({name: f"{name} is not a history filter." for name in sorted(unknown)})
        since, until = _period(raw.get("since"), raw.get("until"))
        seed = raw.get("seed")
        collection = raw.get("collection_id")
        collection_id = None if collection in (None, "") else _whole(collection, "collection_id", 1, 2**63 - 1)
        if collection_id is not None and not Collection.select().where(
                (Collection.id == collection_id) & (Collection.user == user)).exists():
            raise InvalidRequest({"collection_id": f"collection {collection_id} does not exist."})
        return search.ImageFilters(
            since=since, until=until, model=_name(raw.get("model"), "model"),
            mode=_choice(raw.get("mode"), "mode", MODES),
            width=_size(raw.get("width"), "width"), height=_size(raw.get("height"), "height"),
            sampler=_name(raw.get("sampler"), "sampler"),
            seed=None if seed in (None, "") else _whole(seed, "seed", 0, MAX_SEED),
            lora=_name(raw.get("lora"), "lora"), favourite=_flag(raw.get("favourite"), "favourite"),
            status=_choice(raw.get("status"), "status", STATUSES), collection_id=collection_id)

    def images(self, user: str, q: str | None = "", *, order: str | None = None, cursor: str | None = None,
               limit: int = 20, **filters: Any) -> dict[str, Any]:
        """One page of the user's jobs matching `q` and `filters`, best first (newest first without words), each
        with its matched words marked; `next_cursor` continues the same search."""
        _check_user(user)
        query = parse(q if isinstance(q, str) else "")
        checked = self.image_filters(user, **filters)
        chosen = _order(order, query)
        limit = _whole(limit, "limit", 1, MAX_PAGE)
        fingerprint = _fingerprint("images", query, checked, chosen)
        after, chosen = _decode(cursor, fingerprint, chosen)
        found = search.search_jobs(user, query, checked, chosen, after, limit + 1)  # one more: is there a next page?
        page = found.keys[:limit]
        ids = [ident for _, ident in page]
        jobs = {job.id: job for job in prefetch(ImageJob.select().where(ImageJob.id.in_(ids)), ImageFile.select())}
        marks = search.job_highlights(ids, query)
        results = []
        for ident in ids:
            if (job := jobs.get(ident)) is None:  # deleted since the page was read
                continue
            item = job_to_dict(job)
            if ident in marks:
                item["highlight"] = {name: segments(text) for name, text in marks[ident].items()}
            results.append(item)
        return {"jobs": results, **_paging(found, page, fingerprint, limit), "query": _describe(query)}

    def conversations(self, user: str, q: str | None = "", *, reasoning: bool = True, since: Any = None,
                      until: Any = None, favourite: Any = None, order: str | None = None, cursor: str | None = None,
                      limit: int = 20) -> dict[str, Any]:
        """One page of the user's conversations whose title or any message matches `q` (the reasoning too when
        `reasoning`), best first (latest activity first without words), with the best message's snippet."""
        _check_user(user)
        query = parse(q if isinstance(q, str) else "")
        start, end = _period(since, until)
        checked = search.ConversationFilters(start, end, _flag(favourite, "favourite"))
        with_reasoning = bool(_flag(reasoning, "reasoning") if reasoning is not None else True)
        chosen = _order(order, query)
        limit = _whole(limit, "limit", 1, MAX_PAGE)
        fingerprint = _fingerprint("conversations", query, checked, chosen, with_reasoning)
        after, chosen = _decode(cursor, fingerprint, chosen)
        found = search.search_conversations(user, query, checked, with_reasoning, chosen, after, limit + 1)
        page = found.keys[:limit]
        ids = [ident for _, ident in page]
        rows = {c.id: c for c in Conversation.select().where(Conversation.id.in_(ids))}
        counts = dict(Message.select(Message.conversation, fn.COUNT(Message.id)).where(
            Message.conversation.in_(ids)).group_by(Message.conversation).tuples())
        matches = search.conversation_matches(ids, query, with_reasoning)
        results = [_conversation(rows[i], counts.get(i, 0), matches.get(i)) for i in ids if i in rows]
        return {"conversations": results, **_paging(found, page, fingerprint, limit), "query": _describe(query)}

    def facets(self, user: str) -> dict[str, list[Any]]:
        """The values the user's jobs have for each choice filter (models, samplers, modes, sizes), for the UIs'
        drop-downs."""
        _check_user(user)
        mine = ImageJob.select().where(ImageJob.user == user)

        def distinct(*fields: Any) -> list[Any]:
            rows = mine.select(*fields).distinct().order_by(*fields).tuples()
            return [row if len(row) > 1 else row[0] for row in rows]

        models = sorted({m for m in distinct(ImageJob.model) + distinct(ImageJob.checkpoint) if m})
        return {"models": models, "samplers": distinct(ImageJob.sampler), "modes": distinct(ImageJob.mode),
                "sizes": [f"{w}x{h}" for w, h in distinct(ImageJob.width, ImageJob.height)]}


def _check_user(user: Any) -> None:
    if not isinstance(user, str):  # None would be an admin's "everyone": search is per user, always
        raise TypeError("search takes the user's name (Viewer.name), never None")


def _order(order: str | None, query: Query) -> search.Order:
    chosen = _choice(order, "order", ORDERS) or ("relevance" if query.positive else "newest")
    # Without words to match there is no relevance: the newest come first.
    return "newest" if chosen == "relevance" and not query.positive else chosen  # type: ignore[return-value]


def _describe(query: Query) -> dict[str, Any]:
    return {"terms": [spelled(t) for t in query.terms], "excluded": [spelled(t, star=False) for t in query.excluded],
            "truncated": query.truncated}


def _fingerprint(kind: str, query: Query, filters: Any, order: str, *extra: Any) -> str:
    """A short digest of what a search asks, carried in its cursor: a cursor only continues its own search."""
    text = json.dumps([kind, repr(query.groups), repr(query.excluded), asdict(filters), order, extra], default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _paging(found: search.Found, page: list[search.Key], fingerprint: str, limit: int) -> dict[str, Any]:
    """The answer's paging fields: the cursor of the next page, the order applied, and a note when it is not the
    order asked for."""
    more = len(found.keys) > limit
    note = None
    if found.ranked_at_most is not None:
        note = (f"More than {found.ranked_at_most:,} matches: newest first rather than by relevance. "
                "Add words or filters to rank them.")
    return {"next_cursor": _encode(page[-1], fingerprint, found.order) if more else None, "order": found.order,
            "note": note}


def _encode(key: search.Key, fingerprint: str, order: str) -> str:
    value, ident = key
    if isinstance(value, dt.datetime):
        value = value.isoformat()
    raw = json.dumps({"k": value, "i": ident, "f": fingerprint, "o": order}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode(cursor: str | None, fingerprint: str, order: search.Order) -> tuple[search.Key | None, search.Order]:
    """Where the cursor's page ended and the order its search applied (relevance may have become newest first);
    (None, `order`) without a cursor."""
    if cursor is None or cursor == "":
        return None, order
    try:
        if not isinstance(cursor, str) or len(cursor) > 512:
            raise ValueError
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        key, ident, applied = data["k"], data["i"], data.get("o", order)
        # Only the order asked for, or newest first in place of relevance; its key a time or a score as it says.
        if not isinstance(ident, int) or isinstance(ident, bool) or not 0 <= ident < 2**63 \
                or applied not in (order, "newest"):
            raise ValueError
        if applied == "relevance":
            if isinstance(key, bool) or not isinstance(key, int | float):
                raise ValueError
        elif not isinstance(key, str):
            raise ValueError
        else:
            dt.datetime.fromisoformat(key)
    except (ValueError, TypeError, KeyError):
        raise InvalidRequest({"cursor": "cursor is not one this server gave (pass next_cursor as it came)."}) from None
    if data.get("f") != fingerprint:
        raise InvalidRequest({"cursor": "cursor belongs to another search: keep the words, filters and order "
                                        "that gave it, or start again without a cursor."})
    return (key, ident), applied


def _conversation(c: Conversation, messages: int, match: search.ConversationMatch | None) -> dict[str, Any]:
    item: dict[str, Any] = {"conversation_id": c.id, "title": c.title, "created_at": c.created_at.isoformat(),
                            "updated_at": c.updated_at.isoformat(), "favourite": bool(c.favourite),
                            "messages": messages}
    if match is not None and match.title is not None:
        item["title_highlight"] = segments(match.title)
    if match is not None and match.message_id is not None:
        item["match"] = {"message_id": match.message_id, "field": match.field, "snippet": segments(match.snippet)}
    return item
