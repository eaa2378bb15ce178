"""Migrations are ordered, named, applied once, and each one is all-or-nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from peewee import SqliteDatabase

from storage.db import open_database
from storage.migrations import MIGRATIONS, applied, migrate


def tables(db: SqliteDatabase) -> set[str]:
    return set(db.get_tables())


def test_open_applies_every_migration_in_order(tmp_path: Path) -> None:
    db = open_database(tmp_path / "a.db")
    assert applied(db) == [name for name, _ in MIGRATIONS]
    assert {"imagejob", "imagefile", "migrations"} <= tables(db)
    assert db.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_migrating_again_is_a_no_op(tmp_path: Path) -> None:
    db = open_database(tmp_path / "a.db")
    before = applied(db)
    assert migrate(db) == []
    assert applied(db) == before
    db.close()
    reopened = open_database(tmp_path / "a.db")  # a restart
    assert applied(reopened) == before


def test_a_failing_migration_leaves_nothing_half_done(tmp_path: Path) -> None:
    db = open_database(tmp_path / "a.db")

    def bad(d: SqliteDatabase) -> None:
        d.execute_sql("CREATE TABLE half (x INTEGER)")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        migrate(db, [*MIGRATIONS, ("999_bad", bad)])
    assert "half" not in tables(db)
    assert "999_bad" not in applied(db)

    def good(d: SqliteDatabase) -> None:
        d.execute_sql("CREATE TABLE later (x INTEGER)")

    assert migrate(db, [*MIGRATIONS, ("999_good", good)]) == ["999_good"]
    assert "later" in tables(db)
