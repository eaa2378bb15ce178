"""Moving a one-box install's history into PostgreSQL, for replicas: the use case behind `python app.py db
migrate-sqlite-to URL`. The copy itself speaks SQL and lives in storage/sqlite_to_postgres.py."""

from __future__ import annotations

from pathlib import Path

from storage.sqlite_to_postgres import TransferError, copy_sqlite_to

NEXT_STEP = "Done. Set ATELIER_DATABASE_URL to this URL (and keep the images folder or store) to use it."


class CopyRefused(ValueError):
    """The copy cannot be made as asked; the message says why, and the target is unchanged."""


def copy_history_to_postgres(source: Path, url: str) -> list[str]:
    """Copy every table of the SQLite database at `source` (ids kept; rows already there skipped) into the PostgreSQL
    database at `url`, and say what happened, a line per table and then what to do next; CopyRefused, saying why,
    when nothing was copied."""
    try:
        report = copy_sqlite_to(source, url)
    except TransferError as err:
        raise CopyRefused(str(err)) from None
    return [*(f"{table.table}: {table.copied} copied, {table.already_there} already there" for table in report),
            NEXT_STEP]
