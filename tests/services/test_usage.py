"""Usage from the request log: per user and for everyone over a half-open period, jobs only (refusals and reads
cost nothing); the admin's filtered, paged view of the rows; bad periods and filters refused with a reason."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from services.request_log import RequestRecord, insert_rows
from services.usage import UsageError, find_requests, period, usage_by_user, usage_of
from storage.db import open_database

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def add(minutes: float, user: str, kind: str = "image", status: str = "done", **fields: object) -> None:
    """A row written as the request log's writer writes it."""
    insert_rows([RequestRecord(kind, status, started_at=T0 + dt.timedelta(minutes=minutes), user=user, **fields)])


@pytest.fixture
def log(db_location: Path | str) -> None:
    open_database(db_location)
    add(0, "alice", images=2, gpu_s=1.5)
    add(1, "alice", "chat", prompt_tokens=10, completion_tokens=30, gpu_s=2.0)
    add(2, "alice", status="failed", reason="boom", gpu_s=0.25)
    add(3, "alice", status="refused", reason="image")  # refused: never ran
    add(4, "alice", "read", route="/api/history")  # a read: not a job
    add(5, "bob", "chat", "cancelled", prompt_tokens=5, completion_tokens=3, gpu_s=0.5)
    add(60, "alice", images=4, gpu_s=3.0)  # outside [T0, T0 + 60 min)


def test_a_users_usage_counts_their_jobs_in_the_period(log: None) -> None:
    alice = usage_of("alice", T0, T0 + dt.timedelta(minutes=60)).as_dict()
    assert alice == {"user": "alice", "jobs": 3, "done": 2, "failed": 1, "cancelled": 0, "image_jobs": 2,
                     "chat_replies": 1, "images": 2, "prompt_tokens": 10, "completion_tokens": 30,
                     "gpu_seconds": 3.75}
    assert usage_of("alice", T0, T0 + dt.timedelta(minutes=61)).images == 6  # the later job is in a longer period
    assert usage_of("carol", T0, T0 + dt.timedelta(days=1)).as_dict() == {
        "user": "carol", "jobs": 0, "done": 0, "failed": 0, "cancelled": 0, "image_jobs": 0, "chat_replies": 0,
        "images": 0, "prompt_tokens": 0, "completion_tokens": 0, "gpu_seconds": 0.0}


def test_everyones_usage_lists_each_user_and_the_total(log: None) -> None:
    report = usage_by_user(T0, T0 + dt.timedelta(minutes=60))
    assert [(u["user"], u["jobs"], u["gpu_seconds"]) for u in report["users"]] == [("alice", 3, 3.75),
                                                                                   ("bob", 1, 0.5)]
    total = report["total"]
    assert (total["user"], total["jobs"], total["cancelled"], total["completion_tokens"]) == (None, 4, 1, 33)
    assert usage_by_user(T0 - dt.timedelta(days=2), T0 - dt.timedelta(days=1))["users"] == []


def test_the_admins_view_filters_and_pages_the_rows(log: None) -> None:
    first = find_requests(user="alice", limit=2)
    assert [r["started_at"][:16] for r in first["requests"]] == ["2026-03-01T13:00", "2026-03-01T12:04"]
    second = find_requests(user="alice", limit=2, before=first["next_before"])
    assert [r["status"] for r in second["requests"]] == ["refused", "failed"]
    assert [r["reason"] for r in find_requests(status="refused")["requests"]] == ["image"]
    assert [r["user"] for r in find_requests(kind="chat", start=T0, end=T0 + dt.timedelta(minutes=60))["requests"]
            ] == ["bob", "alice"]
    assert find_requests(route="/api/history")["requests"][0]["kind"] == "read"
    assert find_requests(user="nobody") == {"requests": [], "next_before": None}


@pytest.mark.parametrize(("filters", "message"), [
    ({"limit": 0}, "limit must be between 1 and 500"),
    ({"kind": "everything"}, "kind must be one of"),
    ({"status": "ok"}, "status must be one of"),
    ({"before": 0}, "before must be a row id"),
])
def test_bad_filters_are_refused_with_a_reason(log: None, filters: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        find_requests(**filters)


def test_periods_default_to_thirty_days_and_refuse_nonsense() -> None:
    start, end = period(until=T0)
    assert (start, end) == (T0 - dt.timedelta(days=30), T0)
    assert period(since=dt.datetime(2026, 3, 1), until=dt.datetime(2026, 3, 2))[0] == T0 - dt.timedelta(hours=12)
    assert period(days=1, until=T0)[0] == T0 - dt.timedelta(days=1)
    with pytest.raises(UsageError, match="must come before"):
        period(since=T0, until=T0)
    with pytest.raises(UsageError, match="either since or days"):
        period(since=T0, days=1)
    with pytest.raises(UsageError, match="days must be more than 0"):
        period(days=0)
    with pytest.raises(UsageError, match="at most 3660 days"):
        period(since=T0 - dt.timedelta(days=4000), until=T0)
