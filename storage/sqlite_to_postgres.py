"""Copy a SQLite history into PostgreSQL (`python app.py db migrate-sqlite-to URL`): every row, ids kept.

Safe to run again: a row already in the target with the same values is skipped, one with other values stops the
copy before anything is written (it would be lost otherwise), and the whole copy is one PostgreSQL transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peewee import Database, OperationalError

from storage.connections import is_postgres_url, make_database
from storage.migrations import SEARCHED, migrate
from storage.models import ALL_MODELS, BaseModel

CHUNK = 500
# SQLite's own bookkeeping, and the migrations table, which migrate() fills in the target itself.
NOT_COPIED = {"sqlite_sequence", "migrations"}
# SQLite's full-text indexes (FTS5 tables and their shadow tables): PostgreSQL builds its own from the rows.
FTS_PREFIXES = tuple(f"{table}_fts" for table in SEARCHED)


class TransferError(ValueError):
    """The copy cannot be made as asked; the message says why, and the target is unchanged."""


@dataclass
class TableCopy:
    """What happened to one table."""

    table: str
    copied: int = 0
    already_there: int = 0


def copy_sqlite_to(source: Path, url: str) -> list[TableCopy]:
    """Copy every table of the SQLite database at `source` into the PostgreSQL database at `url`."""
    if not is_postgres_url(url):
        raise TransferError(f"the target must be a postgresql:// URL, not {url!r}")
    if not source.is_file():
        raise TransferError(f"there is no SQLite database at {source}")
    src, dst = make_database(source), make_database(url, pool_size=1)
    try:
        src.connect()
        try:
            dst.connect()
        except OperationalError as err:
            raise TransferError(f"cannot reach the PostgreSQL database: {str(err).strip()}") from None
        # Both at the current schema first: an older SQLite file is upgraded as a start of Atelier would.
        migrate(src)
        migrate(dst)
        _check_source(src)
        # One snapshot of the source (its write lock keeps a running Atelier from changing it meanwhile), one
        # transaction on the target: a failure leaves PostgreSQL as it was.
        with src.atomic(), dst.atomic():
            report = [_copy_table(model, src, dst) for model in ALL_MODELS]
            for model in ALL_MODELS:
                _advance_sequence(model, src, dst)
        return report
    finally:
        src.close()
        dst.close()


def _check_source(src: Database) -> None:
    tables = {model._meta.table_name: model for model in ALL_MODELS}
    for table in sorted(t for t in set(src.get_tables()) - NOT_COPIED if not t.startswith(FTS_PREFIXES)):
        model = tables.get(table)
        if model is None:
            raise TransferError(f"table {table} has no model to copy it with; nothing was copied")
        missing = {c.name for c in src.get_columns(table)} - {f.column_name for f in model._meta.sorted_fields}
        if missing:
            raise TransferError(f"{table} has columns the models do not know ({', '.join(sorted(missing))}); "
                                "nothing was copied")
    # PostgreSQL enforces every foreign key; a dangling row would stop the copy halfway through a table.
    dangling = src.execute_sql("PRAGMA foreign_key_check").fetchall()
    if dangling:
        where = ", ".join(sorted({f"{table} row {rowid}" for table, rowid, *_ in dangling})[:10])
        raise TransferError(f"the SQLite database has rows pointing at rows that no longer exist ({where}); "
                            "nothing was copied")


def _rows(model: type[BaseModel], db: Database, after: int) -> list[dict[str, Any]]:
    with model.bind_ctx(db):
        query = model.select().where(model.id > after).order_by(model.id).limit(CHUNK)
        return list(query.dicts())


def _chunks(model: type[BaseModel], db: Database) -> Iterator[list[dict[str, Any]]]:
    after = 0
    while rows := _rows(model, db, after):
        yield rows
        after = rows[-1]["id"]


def _copy_table(model: type[BaseModel], src: Database, dst: Database) -> TableCopy:
    result = TableCopy(model._meta.table_name)
    for rows in _chunks(model, src):
        with model.bind_ctx(dst):
            there = {row["id"]: row for row in model.select().where(model.id.in_([r["id"] for r in rows])).dicts()}
            new = []
            for row in rows:
                if row["id"] not in there:
                    new.append(row)
                elif _comparable(there[row["id"]]) == _comparable(row):
                    result.already_there += 1
                else:
                    raise TransferError(f"{result.table} row {row['id']} already exists in the target with other "
                                        "values; nothing was copied (copy into an empty database)")
            if new:
                model.insert_many(new).execute()
            result.copied += len(new)
    return result


def _comparable(row: dict[str, Any]) -> dict[str, Any]:
    """A row as compared between the databases: a time SQLite kept without its zone was UTC (the target gives it
    one)."""
    return {k: v.replace(tzinfo=dt.UTC) if isinstance(v, dt.datetime) and v.tzinfo is None else v
            for k, v in row.items()}


def _advance_sequence(model: type[BaseModel], src: Database, dst: Database) -> None:
    """Move the target's id sequence past every copied id, and past ids SQLite handed out and never reuses
    (rows deleted at the end), so that new rows never take an old id."""
    table = model._meta.table_name
    used = src.execute_sql("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
    with model.bind_ctx(dst):
        highest = max(used[0] if used else 0, model.select(model.id).order_by(model.id.desc()).scalar() or 0)
    if highest:
        sequence = dst.execute_sql("SELECT pg_get_serial_sequence(%s, 'id')", (table,)).fetchone()[0]
        # GREATEST: a target that already went further (rows added there) keeps its place.
        dst.execute_sql("SELECT setval(%s, GREATEST(%s, nextval(%s) - 1))", (sequence, highest, sequence))
