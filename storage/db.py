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
    "busy_timeout": 5000,
}


def open_database(path: Path) -> SqliteDatabase:
    """Open (creating if needed) the database at `path`, apply migrations, and bind the models to it."""
    from storage.migrations import migrate

    path.parent.mkdir(parents=True, exist_ok=True)
    db = SqliteDatabase(str(path), pragmas=PRAGMAS, check_same_thread=False)
    database.initialize(db)
    db.connect(reuse_if_open=True)
    migrate(db)
    return db
