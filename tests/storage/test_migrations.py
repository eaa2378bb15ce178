"""Migrations are ordered, named, applied once, each one all-or-nothing, on SQLite and PostgreSQL alike; replicas
starting together on one PostgreSQL apply each exactly once; existing SQLite databases keep working."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from peewee import Database
from playhouse.migrate import SchemaMigrator
from playhouse.migrate import TextField as MigrateTextField
from playhouse.migrate import migrate as run_operations

from contracts import MAX_SEED
from storage.connections import is_postgres, make_database
from storage.db import open_database
from storage.migrations import MIGRATIONS, applied, migrate
from storage.models import ALL_MODELS, Account, ImageFile, ImageJob

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data"


def tables(db: Database) -> set[str]:
    return set(db.get_tables())


def test_open_applies_every_migration_in_order(db_location: Path | str) -> None:
    db = open_database(db_location)
    assert applied(db) == [name for name, _ in MIGRATIONS]
    assert {"imagejob", "imagefile", "conversation", "message", "replydraft", "account", "requestlog", "userlimit",
            "migrations"} <= tables(db)
    if not is_postgres(db):
        assert db.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_the_schema_holds_what_the_models_write(db_location: Path | str) -> None:
    """Every model column exists, and values come back as written (booleans, doubles, aware UTC times)."""
    db = open_database(db_location)
    for model in ALL_MODELS:
        columns = {c.name for c in db.get_columns(model._meta.table_name)}
        assert {f.column_name for f in model._meta.sorted_fields} <= columns, model.__name__
    job = ImageJob.create(backend="b", model="m", prompt="p", width=64, height=64, steps=1, cfg_scale=7.123456789,
                          seed=MAX_SEED, seed_used=MAX_SEED, sampler="Euler", cached=True, duration_s=12.3456789)
    ImageFile.create(job=job, index=0, path="f.png", seed=MAX_SEED, width=64, height=64)
    back = ImageJob.get_by_id(job.id)
    assert (back.cfg_scale, back.duration_s, back.cached) == (7.123456789, 12.3456789, True)
    assert (back.seed, back.seed_used, back.files[0].seed) == (MAX_SEED, MAX_SEED, MAX_SEED)
    assert back.created_at == job.created_at
    assert back.created_at.utcoffset().total_seconds() == 0
    Account.create(name="a", password_hash="h")
    assert Account.get(Account.name == "a").is_admin is False


def test_migrating_again_is_a_no_op(db_location: Path | str) -> None:
    db = open_database(db_location)
    before = applied(db)
    assert migrate(db) == []
    assert applied(db) == before
    db.close()
    reopened = open_database(db_location)  # a restart
    assert applied(reopened) == before


def test_a_failing_migration_leaves_nothing_half_done(db_location: Path | str) -> None:
    db = open_database(db_location)

    def bad(d: Database) -> None:
        d.execute_sql("CREATE TABLE half (x INTEGER)")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        migrate(db, [*MIGRATIONS, ("999_bad", bad)])
    assert "half" not in tables(db)
    assert "999_bad" not in applied(db)

    def good(d: Database) -> None:
        d.execute_sql("CREATE TABLE later (x INTEGER)")

    assert migrate(db, [*MIGRATIONS, ("999_good", good)]) == ["999_good"]
    assert "later" in tables(db)


def test_a_migration_written_with_playhouse_migrate_runs_on_both(db_location: Path | str) -> None:
    db = open_database(db_location)

    def add_note(d: Database) -> None:
        migrator = SchemaMigrator.from_database(d)
        run_operations(migrator.add_column("imagejob", "note", MigrateTextField(default="")))

    assert migrate(db, [*MIGRATIONS, ("999_note", add_note)]) == ["999_note"]
    assert "note" in {c.name for c in db.get_columns("imagejob")}
    assert migrate(db, [*MIGRATIONS, ("999_note", add_note)]) == []


def test_an_existing_sqlite_database_keeps_its_rows_and_schema(tmp_path: Path) -> None:
    """A database written before migrations became portable (data/v004.sql: schema and rows as 0.x left them)
    opens, keeps every row, and has exactly the schema a new database gets."""
    old, new = tmp_path / "old.db", tmp_path / "new.db"
    with sqlite3.connect(old) as conn:
        conn.executescript((DATA / "v004.sql").read_text())
    db = open_database(old)
    assert applied(db) == [name for name, _ in MIGRATIONS]
    assert [(j.prompt, j.cached, j.cfg_scale) for j in ImageJob.select().order_by(ImageJob.id)] == [
        ("a red fox", False, 7.5), ("a blue fox", True, 7.5)]
    db.close()
    open_database(new).close()
    assert _sqlite_schema(old) == _sqlite_schema(new)


def _sqlite_schema(path: Path) -> dict[str, list[tuple[object, ...]]]:
    with sqlite3.connect(path) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {name: [*conn.execute(f"PRAGMA table_info({name})"), *conn.execute(f"PRAGMA index_list({name})"),
                       *conn.execute(f"PRAGMA foreign_key_list({name})")] for name in names}


# Two replicas starting at once on one fresh PostgreSQL ---------------------------------------------------------
REPLICA = """
import sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from contracts import MAX_SEED
from storage.db import make_database
from storage.migrations import MIGRATIONS, migrate

def logged(name, step):
    def run(db):
        db.execute_sql("CREATE TABLE IF NOT EXISTS applylog (name TEXT, replica TEXT)")
        db.execute_sql("INSERT INTO applylog VALUES (%s, %s)", (name, sys.argv[1]))
        time.sleep(0.3)  # long enough for the other replica to arrive while this one migrates
        step(db)
    return name, run

db = make_database({url!r})
db.connect()
go = Path({go!r})
while not go.exists():  # both replicas begin at the same moment
    time.sleep(0.005)
print(",".join(migrate(db, [logged(n, s) for n, s in MIGRATIONS])))
"""


def test_two_replicas_starting_together_apply_each_migration_exactly_once(postgres_url: str, tmp_path: Path) -> None:
    go = tmp_path / "go"
    script = REPLICA.format(root=str(ROOT), url=postgres_url, go=str(go))
    replicas = [subprocess.Popen([sys.executable, "-c", script, name], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True) for name in ("a", "b")]
    go.touch()
    outcomes = [r.communicate(timeout=120) for r in replicas]
    assert [r.returncode for r in replicas] == [0, 0], [err[-2000:] for _, err in outcomes]
    names = [name for name, _ in MIGRATIONS]
    # One replica applied everything, the other found it done.
    assert sorted(out.strip() for out, _ in outcomes) == ["", ",".join(names)]
    db = make_database(postgres_url)
    log = [row[0] for row in db.execute_sql("SELECT name FROM applylog")]
    assert sorted(log) == sorted(names)  # each once (the names of several branches do not sort in list order)
    assert applied(db) == names
    db.close()
