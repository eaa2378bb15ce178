"""The request log: rows are written in batches by a thread of their own, never by the request; a slow or
unreachable database costs memory only up to a bound (the newest rows are dropped and counted); shutdown writes
what is pending; retention deletes old rows; one bad row loses only itself."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from peewee import OperationalError

from services import log_context, request_log
from services.request_log import RequestLog, RequestRecord, insert_rows
from storage.connections import is_postgres
from storage.db import open_database
from storage.models import RequestLog as Row
from storage.models import utcnow


@pytest.fixture
def location(db_location: Path | str) -> Path | str:
    open_database(db_location)
    return db_location


@contextmanager
def database_locked(location: Path | str) -> Iterator[None]:
    """Another connection holds the request log table, as a slow database would: writers wait."""
    if isinstance(location, str):
        with psycopg.connect(location) as conn:
            conn.execute("LOCK TABLE requestlog IN ACCESS EXCLUSIVE MODE")
            yield
            conn.rollback()
    else:
        conn = sqlite3.connect(location, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()


def rows() -> list[tuple[str, str]]:
    return [(r.route, r.status) for r in Row.select().order_by(Row.id)]


def record(log: RequestLog, route: str, **fields: object) -> bool:
    return log.record(RequestRecord("read", "done", route=route, **fields))


def test_rows_are_written_by_the_writer_never_by_the_request(location: Path | str) -> None:
    log = RequestLog(flush_every_s=0.05)
    log.start()
    try:
        with database_locked(location):
            # The database answers nothing, yet recording returns at once: the rows wait in memory.
            assert all(record(log, f"/r{i}") for i in range(10))
            assert log.pending == 10
            assert log.written == 0
        assert log.flush(30)
        assert rows() == [(f"/r{i}", "done") for i in range(10)]
        assert log.written == 10
    finally:
        log.stop()


def test_a_slow_database_costs_bounded_memory_and_drops_the_newest_rows_counted(location: Path | str) -> None:
    log = RequestLog(max_pending=5, flush_every_s=0.05)
    log.start()
    try:
        with database_locked(location):
            accepted = [record(log, f"/r{i}") for i in range(8)]
            assert accepted == [True] * 5 + [False] * 3
            assert (log.pending, log.dropped) == (5, 3)
        assert log.flush(30)
        assert rows() == [(f"/r{i}", "done") for i in range(5)]  # the oldest, in order
        assert record(log, "/after")  # room again
    finally:
        log.stop()
    assert rows()[-1] == ("/after", "done")
    assert (log.written, log.dropped) == (6, 3)


def test_a_failed_write_is_retried_and_keeps_the_order(location: Path | str, monkeypatch: pytest.MonkeyPatch) -> None:
    real = request_log.insert_rows
    failures = iter([OperationalError("connection lost")])

    def flaky(records: list[RequestRecord]) -> None:
        if (error := next(failures, None)) is not None:
            raise error
        real(records)

    monkeypatch.setattr(request_log, "insert_rows", flaky)
    monkeypatch.setattr(request_log, "RETRY_MAX_S", 0.05)
    log = RequestLog(flush_every_s=0.01, batch_rows=2)  # the failed batch is not all there is
    for i in range(5):
        record(log, f"/r{i}")
    log.start()
    assert log.flush(30)
    log.stop()
    assert rows() == [(f"/r{i}", "done") for i in range(5)]
    assert (log.written, log.dropped, log.failed) == (5, 0, 0)


def test_stop_writes_what_is_pending(location: Path | str) -> None:
    log = RequestLog(flush_every_s=3600)  # the batch never fills and the clock never strikes: only stop writes
    log.start()
    for i in range(3):
        record(log, f"/r{i}")
    log.stop()
    assert rows() == [("/r0", "done"), ("/r1", "done"), ("/r2", "done")]


def test_a_row_the_database_refuses_loses_only_itself(location: Path | str) -> None:
    log = RequestLog(flush_every_s=0.01)
    record(log, "/before")
    record(log, "/huge", images=2**40)  # beyond PostgreSQL's integer column; SQLite stores it
    record(log, "/after")
    log.start()
    assert log.flush(30)
    log.stop()
    pg = is_postgres()
    assert [route for route, _ in rows()] == (["/before", "/after"] if pg else ["/before", "/huge", "/after"])
    assert log.failed == (1 if pg else 0)


def test_retention_deletes_only_rows_older_than_the_setting(location: Path | str) -> None:
    now = utcnow()
    insert_rows([RequestRecord("read", "done", route=f"/{days}", started_at=now - dt.timedelta(days=days))
                 for days in (100, 31, 29, 0)])
    assert RequestLog(retention_days=0).prune(now) == 0
    assert RequestLog(retention_days=30).prune(now) == 2
    assert [route for route, _ in rows()] == ["/29", "/0"]


def test_a_record_takes_the_request_context_and_fits_the_columns() -> None:
    with log_context.bound(request_id="req-1", user="alice", client="203.0.113.9", route="/api/history"):
        here = RequestRecord.here("read", "done")
        other = RequestRecord.here("login", "failed", user="mallory")
    assert (here.request_id, here.user, here.client, here.route) == ("req-1", "alice", "203.0.113.9", "/api/history")
    assert other.user == "mallory"
    assert RequestRecord.here("read", "done").user == ""
    long = RequestRecord("read", "refused", route="/x" * 500, reason="r" * 5000).row()
    assert (len(long["route"]), len(long["reason"])) == (255, 2000)
    with pytest.raises(ValueError, match="kind must be one of"):
        RequestRecord("reading", "done")
    with pytest.raises(ValueError, match="status must be one of"):
        RequestRecord("read", "ok")


def test_recording_from_many_threads_loses_nothing(location: Path | str) -> None:
    log = RequestLog(flush_every_s=0.01, batch_rows=7)
    log.start()
    threads = [threading.Thread(target=lambda t=t: [record(log, f"/t{t}/{i}") for i in range(50)]) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.stop()
    assert Row.select().count() == 200
    assert log.written == 200
