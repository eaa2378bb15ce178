"""The SQLite database: one per data dir, WAL mode, opened once at start."""

from __future__ import annotations

from pathlib import Path

from peewee import DatabaseProxy, SqliteDatabase

# Models bind to this proxy; open_database() points it at the real file.
database = DatabaseProxy()

PRAGMAS = {
    # WAL lets history reads run while a job is being recorded.
    "journal_mode": "wal",
    "foreign_keys": 1,
    "synchronous": "normal",
    # A writer waits this long (ms) for another's transaction to end rather than fail with "database is locked".
    "busy_timeout": 30000,
}


def open_database(path: Path) -> SqliteDatabase:
    """Open (creating if needed) the database at `path`, apply migrations, and bind the models to it."""
    from storage.migrations import migrate

    path.parent.mkdir(parents=True, exist_ok=True)
    # BEGIN IMMEDIATE for every transaction: each one here reads, then writes (plan a turn, add an account,
    # delete a conversation). A deferred BEGIN takes the write lock only at the first write, and if another
    # connection wrote in between, SQLite answers "database is locked" at once, without waiting (a stale read
    # snapshot cannot be upgraded). Taking the lock up front makes concurrent writers queue on busy_timeout.
    db = SqliteDatabase(str(path), pragmas=PRAGMAS, check_same_thread=False, lock_type="IMMEDIATE")
    database.initialize(db)
    db.connect(reuse_if_open=True)
    migrate(db)
    return db
