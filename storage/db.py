"""The database: SQLite in the data dir (one box), or PostgreSQL by URL with pooled connections (replicas)."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import peewee
from peewee import Database, DatabaseProxy, PostgresqlDatabase, SqliteDatabase
from playhouse.db_url import parse
from playhouse.pool import PooledPostgresqlDatabase

# Models bind to this proxy; open_database() points it at the real database.
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


def open_database(location: Path | str, pool_size: int = DEFAULT_POOL_SIZE) -> Database:
    """Open (creating if needed) the database at `location`, apply migrations, and bind the models to it."""
    from storage.migrations import migrate

    db = make_database(location, pool_size)
    database.initialize(db)
    db.connect(reuse_if_open=True)
    migrate(db)
    return db


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


# Held by every running replica (shared), and by one starting replica alone (exclusive) while it recovers.
REPLICAS_LOCK = 0x41_74_65_6C_69_65_73  # any constant every replica shares
# With a replica name's key (two-int advisory locks): held by the replica of that name for as long as it runs, so
# that another replica can tell a name whose process is gone (the lock is free) from one still at work.
REPLICA_NAME_CLASS = 0x41_74_6C_72  # "Atlr"
NAME_WAIT_S = 30.0
# This process's presence connections: open for as long as it runs, so that PostgreSQL counts it as a replica.
_presence: list[Database] = []
# The replica names this process holds (several apps in one process, as tests build them, share its locks).
_names: set[str] = set()


class ReplicaNameTaken(RuntimeError):
    """Another running replica of this database already uses the name this one was given."""


def _name_key(name: str) -> int:
    """A name's advisory-lock key: a signed 32-bit hash (two names sharing one only make a sweep wait longer)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big", signed=True)


def _connect_alone(db: PostgresqlDatabase) -> PostgresqlDatabase:
    """A connection of its own, outside the pool and any transaction."""
    own = PostgresqlDatabase(db.database, thread_safe=False, prefer_psycopg3=True, **db.connect_params)
    own.connect()
    return own


def _take_name(presence: PostgresqlDatabase, name: str) -> bool:
    """Lock the replica name, waiting up to NAME_WAIT_S: a sweep may hold it for a moment, and PostgreSQL may not
    yet have dropped the connection of this replica's previous, dead process."""
    deadline = time.monotonic() + NAME_WAIT_S
    while True:
        if presence.execute_sql("SELECT pg_try_advisory_lock(%s, %s)",
                                (REPLICA_NAME_CLASS, _name_key(name))).fetchone()[0]:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.5)


def join_replicas(db: Database, recover: Callable[[], None], name: str = "") -> bool:
    """Run `recover` (turn work a crash left unfinished into failures) only when no other replica of this database
    is running, since what it finds unfinished may then be theirs, still under way; from then on count this process
    as running, under `name`. Return whether `recover` ran. SQLite has one process: it always recovers.
    ReplicaNameTaken when a running replica already has the name."""
    if not isinstance(db, PostgresqlDatabase):
        recover()
        return True
    # Held until the process ends (or dies: PostgreSQL then drops the locks with the connection).
    presence = _connect_alone(db)
    if name and name not in _names:
        if not _take_name(presence, name):
            presence.close()
            raise ReplicaNameTaken(
                f"another running replica of this database is named {name!r}: give each replica its own "
                "ATELIER_REPLICA_NAME (the default, hostname:port, differs unless two share a host and port)."
            )
        _names.add(name)
    alone = presence.execute_sql("SELECT pg_try_advisory_lock(%s)", (REPLICAS_LOCK,)).fetchone()[0]
    try:
        if alone:
            recover()
    finally:
        # Shared before the exclusive lock goes, so that no replica starting meanwhile believes it is alone.
        presence.execute_sql("SELECT pg_advisory_lock_shared(%s)", (REPLICAS_LOCK,))
        if alone:
            presence.execute_sql("SELECT pg_advisory_unlock(%s)", (REPLICAS_LOCK,))
        _presence.append(presence)
    return bool(alone)


def recover_gone_replicas(db: Database, names: Iterable[str], recover: Callable[[str], int]) -> dict[str, int]:
    """For each replica name whose process is gone (nobody holds its lock), run `recover(name)` while holding
    that lock, so the replica cannot restart and begin new work under the name meanwhile (its start waits, then
    recovers its own); return {name: what recover counted} for those. Names this process holds are skipped.
    SQLite has one process, which recovered everything when it started: nothing to do."""
    if not isinstance(db, PostgresqlDatabase):
        return {}
    gone: dict[str, int] = {}
    pending = sorted(set(names) - _names)
    if not pending:
        return gone
    sweeper = _connect_alone(db)
    try:
        for name in pending:
            key = (REPLICA_NAME_CLASS, _name_key(name))
            if not sweeper.execute_sql("SELECT pg_try_advisory_lock(%s, %s)", key).fetchone()[0]:
                continue  # its replica runs
            try:
                gone[name] = recover(name)
            finally:
                sweeper.execute_sql("SELECT pg_advisory_unlock(%s, %s)", key)
    finally:
        sweeper.close()
    return gone


def leave_replicas() -> None:
    """Stop counting this process as a running replica (as its end would; tests use it to play a replica dying)."""
    while _presence:
        _presence.pop().close()
    _names.clear()
