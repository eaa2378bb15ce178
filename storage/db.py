"""The database as Atelier opens it: at the current schema, its models bound; and the replicas that share one
PostgreSQL database, each counted by an advisory lock while it runs, so that a start-up knows whether it is alone."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from peewee import Database, PostgresqlDatabase

from storage.connections import DEFAULT_POOL_SIZE, database, make_database
from storage.migrations import migrate


def open_database(location: Path | str, pool_size: int = DEFAULT_POOL_SIZE) -> Database:
    """Open (creating if needed) the database at `location`, apply migrations, and bind the models to it."""
    db = make_database(location, pool_size)
    database.initialize(db)
    db.connect(reuse_if_open=True)
    migrate(db)
    return db


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
