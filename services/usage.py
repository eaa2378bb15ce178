"""Reading the request log: usage over a period (jobs, images, tokens, device seconds) for one user or every user,
and the admin's filtered, paged view of the rows.

Usage is summed from the request log, not from history: a user who deletes their images has still used the GPU,
and the figures reach back as far as the log's retention (ATELIER_REQUEST_LOG_RETENTION_DAYS). A job is a row of
kind image or chat that ran or tried to (done, failed, cancelled); refused requests never ran and cost nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

from peewee import Case, fn

from services.metrics import JOB_KINDS, KINDS, STATUSES
from services.request_log import MAX_PAGE
from storage.models import RequestLog as Row
from storage.models import utcnow

MAX_SPAN_DAYS = 3660  # ten years: a period longer than that is a typo, not a question


class UsageError(ValueError):
    """A bad period or filter; the message says what is wrong."""


@dataclass(frozen=True)
class Usage:
    """One user's (or everyone's) use over a period."""

    user: str | None
    jobs: int = 0
    done: int = 0
    failed: int = 0
    cancelled: int = 0
    image_jobs: int = 0
    chat_replies: int = 0
    images: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    gpu_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


def period(since: dt.datetime | None = None, until: dt.datetime | None = None, days: float | None = None
           ) -> tuple[dt.datetime, dt.datetime]:
    """A period in UTC: [since, until), `until` defaulting to now and `since` to `days` (default 30) before it;
    naive times are taken as UTC. UsageError when it is empty, reversed or longer than MAX_SPAN_DAYS."""
    end = _utc(until) if until is not None else utcnow()
    if since is not None and days is not None:
        raise UsageError("give either since or days, not both.")
    if days is not None and not 0 < days <= MAX_SPAN_DAYS:
        raise UsageError(f"days must be more than 0 and at most {MAX_SPAN_DAYS}, got {days:g}.")
    start = _utc(since) if since is not None else end - dt.timedelta(days=30 if days is None else days)
    if start >= end:
        raise UsageError(f"since ({start.isoformat()}) must come before until ({end.isoformat()}).")
    if end - start > dt.timedelta(days=MAX_SPAN_DAYS):
        raise UsageError(f"the period may span at most {MAX_SPAN_DAYS} days.")
    return start, end


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def _sums() -> list[Any]:
    def count(condition: Any, alias: str) -> Any:
        return fn.COALESCE(fn.SUM(Case(None, [(condition, 1)], 0)), 0).alias(alias)

    return [fn.COUNT(Row.id).alias("jobs"), count(Row.status == "done", "done"),
            count(Row.status == "failed", "failed"), count(Row.status == "cancelled", "cancelled"),
            count(Row.kind == "image", "image_jobs"), count(Row.kind == "chat", "chat_replies"),
            fn.COALESCE(fn.SUM(Row.images), 0).alias("images"),
            fn.COALESCE(fn.SUM(Row.prompt_tokens), 0).alias("prompt_tokens"),
            fn.COALESCE(fn.SUM(Row.completion_tokens), 0).alias("completion_tokens"),
            fn.COALESCE(fn.SUM(Row.gpu_s), 0).alias("gpu_seconds")]


def _jobs_in(start: dt.datetime, end: dt.datetime) -> Any:
    return Row.kind.in_(JOB_KINDS) & (Row.status != "refused") & (Row.started_at >= start) & (Row.started_at < end)


def _usage(user: str | None, row: dict[str, Any]) -> Usage:
    return Usage(user=user, **{k: (round(float(v), 3) if k == "gpu_seconds" else int(v))
                               for k, v in row.items() if k != "user"})


def usage_of(user: str, start: dt.datetime, end: dt.datetime) -> Usage:
    """One user's usage over [start, end) (zeros when they did nothing)."""
    row = Row.select(*_sums()).where(_jobs_in(start, end) & (Row.user == user)).dicts().get()
    return _usage(user, row)


def usage_by_user(start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
    """Every user's usage over [start, end), most GPU seconds first, and the total."""
    rows = (Row.select(Row.user, *_sums()).where(_jobs_in(start, end)).group_by(Row.user)
            .order_by(fn.SUM(Row.gpu_s).desc(), Row.user).dicts())
    users = [_usage(r["user"], r) for r in rows]
    total = Row.select(*_sums()).where(_jobs_in(start, end)).dicts().get()
    return {"since": start.isoformat(), "until": end.isoformat(), "users": [u.as_dict() for u in users],
            "total": _usage(None, total).as_dict()}


def find_requests(*, start: dt.datetime | None = None, end: dt.datetime | None = None, user: str | None = None,
                  kind: str | None = None, status: str | None = None, route: str | None = None,
                  request_id: str | None = None, limit: int = 50, before: int | None = None) -> dict[str, Any]:
    """Request log rows matching every filter given, newest first, a page of `limit`; pass `next_before` as `before`
    for the next page. UsageError for a bad filter."""
    if not 1 <= limit <= MAX_PAGE:
        raise UsageError(f"limit must be between 1 and {MAX_PAGE}, got {limit}.")
    if kind is not None and kind not in KINDS:
        raise UsageError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}.")
    if status is not None and status not in STATUSES:
        raise UsageError(f"status must be one of {', '.join(STATUSES)}, got {status!r}.")
    if before is not None and before < 1:
        raise UsageError(f"before must be a row id (1 or more), got {before}.")
    conditions = [c for c in (
        Row.started_at >= _utc(start) if start is not None else None,
        Row.started_at < _utc(end) if end is not None else None,
        Row.user == user if user is not None else None,
        Row.kind == kind if kind is not None else None,
        Row.status == status if status is not None else None,
        Row.route == route if route is not None else None,
        Row.request_id == request_id if request_id is not None else None,
        Row.id < before if before is not None else None,
    ) if c is not None]
    query = Row.select()
    for condition in conditions:
        query = query.where(condition)
    rows = list(query.order_by(Row.id.desc()).limit(limit + 1).dicts())
    page, more = rows[:limit], len(rows) > limit
    for row in page:
        row["started_at"] = row["started_at"].isoformat()
    return {"requests": page, "next_before": page[-1]["id"] if more and page else None}

