"""Connections: SQLite in the data dir (one box), or PostgreSQL by URL with pooled connections (replicas); the proxy the
models bind to, and what the rest of storage/ asks of a database (is it PostgreSQL, keep one connection, lock rows)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import peewee
from peewee import Database, DatabaseProxy, PostgresqlDatabase, SqliteDatabase
from playhouse.db_url import parse
from playhouse.pool import PooledPostgresqlDatabase

# Models bind to this proxy; storage.db.open_database() points it at the real database.
database = DatabaseProxy()

PRAGMAS = {
    # WAL lets history reads run while a job is being recorded.
    "journal_mode": "wal",
    "foreign_keys": 1,
    "synchronous": "normal",
    # A writer waits this long (ms) for another's transaction to end rather than fail with "database is locked".
    "busy_timeout": 30000,
}
# Services catch it (a unique name taken meanwhile by another replica) without importing peewee themselves.
IntegrityError = peewee.IntegrityError
POSTGRES_SCHEMES = ("postgresql", "postgres")
DEFAULT_POOL_SIZE = 20
# A thread waits this long (s) for a pooled connection before the request fails.
POOL_WAIT_S = 30
# Connections idle longer than this (s) are closed and replaced, so a proxy or server timeout never hands out
# a dead one.
POOL_STALE_S = 300


class _UtcPostgresqlDatabase(PostgresqlDatabase):
    """Sessions in UTC: times are stored as timestamptz and read back in the session's zone, and UTC keeps them
    equal to what SQLite returns. Set once per new connection (not as a startup option: PgBouncer refuses those)."""

    def _connect(self) -> Any:
        conn = super()._connect()
        conn.cursor().execute("SET TIME ZONE 'UTC'")
        return conn


class ReleasingPool(PooledPostgresqlDatabase, _UtcPostgresqlDatabase):
    """A PostgreSQL pool whose connections go back after every statement run outside a transaction, and at the end
    of every transaction.

    Peewee otherwise keeps a connection per thread until that thread closes it, and Atelier's threads never do: a
    job runs in a thread of its own, and Gradio and FastAPI run handlers on pools of up to 40 threads each. Those
    would hold a connection each, busy or idle, and the pool would run dry. (psycopg's cursors hold their rows, so
    reading them after the connection went back is safe.)
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pins = threading.local()

    def execute_sql(self, sql: str, params: Any = None) -> Any:
        try:
            return super().execute_sql(sql, params)
        finally:
            self._release_if_idle()

    def commit(self) -> None:
        super().commit()
        self._release_if_idle()

    def rollback(self) -> None:
        super().rollback()
        self._release_if_idle()

    @contextmanager
    def pinned(self) -> Iterator[None]:
        """Keep this thread's connection for the block, transactions or not (a session-level advisory lock)."""
        self._pins.depth = getattr(self._pins, "depth", 0) + 1
        try:
            yield
        finally:
            self._pins.depth -= 1
            self._release_if_idle()

    def _release_if_idle(self) -> None:
        if not getattr(self._pins, "depth", 0) and not self.in_transaction() and not self.is_closed():
            self.close()


def is_postgres_url(location: Path | str) -> bool:
    """Whether `location` names a PostgreSQL database (postgresql://…) rather than a SQLite file."""
    return isinstance(location, str) and location.split("://", 1)[0] in POSTGRES_SCHEMES


def make_database(location: Path | str, pool_size: int = DEFAULT_POOL_SIZE) -> Database:
    """The database at `location` (a SQLite file path or a postgresql:// URL), not yet connected or migrated."""
    if is_postgres_url(location):
        params = parse(str(location))
        name = params.pop("database")
        return ReleasingPool(name, max_connections=pool_size, timeout=POOL_WAIT_S, stale_timeout=POOL_STALE_S,
                             prefer_psycopg3=True, **params)
    if isinstance(location, str):
        raise ValueError(f"not a database location: {location!r} (a file path or a postgresql:// URL)")
    location.parent.mkdir(parents=True, exist_ok=True)
    # BEGIN IMMEDIATE for every transaction: each one here reads, then writes (plan a turn, add an account,
    # delete a conversation). A deferred BEGIN takes the write lock only at the first write, and if another
    # connection wrote in between, SQLite answers "database is locked" at once, without waiting (a stale read
    # snapshot cannot be upgraded). Taking the lock up front makes concurrent writers queue on busy_timeout.
    # PostgreSQL needs no such thing: its writers wait on row locks (see for_update()).
    return SqliteDatabase(str(location), pragmas=PRAGMAS, check_same_thread=False, lock_type="IMMEDIATE")


def for_update(query: Any) -> Any:
    """`query` locking the rows it reads until the transaction ends (PostgreSQL); SQLite's BEGIN IMMEDIATE
    already holds the whole database for the transaction, and has no FOR UPDATE."""
    return query.for_update() if database.for_update else query


def pinned(db: Database) -> Any:
    """A context in which this thread keeps one connection of `db` throughout (a no-op but for the pool)."""
    return db.pinned() if isinstance(db, ReleasingPool) else nullcontext()


def is_postgres(db: Database | DatabaseProxy = database) -> bool:
    """Whether `db` (by default the open database) is PostgreSQL."""
    target = db.obj if isinstance(db, DatabaseProxy) else db
    return target is not None and not isinstance(target, SqliteDatabase)
