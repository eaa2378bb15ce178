"""Opening the database by location: a SQLite file by default, PostgreSQL by URL through a pool that never runs
dry because job threads end without closing their connection."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from peewee import SqliteDatabase
from pydantic import ValidationError

import storage.connections
from settings import Settings
from storage.connections import ReleasingPool, make_database, pinned
from storage.db import open_database
from storage.models import Account


def test_the_default_is_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.database_location == tmp_path.resolve() / "atelier.db"
    assert isinstance(make_database(settings.database_location), SqliteDatabase)
    url = "postgresql://atelier:secret@db:5432/atelier"
    assert Settings(data_dir=tmp_path, database_url=url).database_location == url


@pytest.mark.parametrize("url", ["mysql://x/y", "sqlite:///x.db", "postgresql:/x", "db.sqlite"])
def test_a_database_url_that_is_not_postgresql_is_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="database_url"):
        Settings(database_url=url)
    with pytest.raises(ValueError, match="not a database location"):
        make_database(url)


def test_threads_that_end_without_closing_give_their_connection_back(postgres_url: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage.connections, "POOL_WAIT_S", 2)  # when broken: fail fast, not 30 s a query
    db = open_database(postgres_url, pool_size=2)
    assert isinstance(db, ReleasingPool)
    errors: list[str] = []

    def one_job(n: int) -> None:  # what a job thread does: queries, then ends without db.close()
        try:
            Account.create(name=f"user{n}", password_hash="h")
        except Exception as err:
            errors.append(f"{type(err).__name__}: {err}")

    for n in range(6):  # three times the pool
        thread = threading.Thread(target=one_job, args=(n,))
        thread.start()
        thread.join()
    assert errors == []
    assert Account.select().count() == 6
    db.close()
    assert db._in_use == {}  # nothing left checked out


def test_a_pinned_block_keeps_its_connection_and_the_lock_on_it(postgres_url: str) -> None:
    db = make_database(postgres_url, pool_size=2)
    db.execute_sql("SELECT 1")
    assert db.is_closed()  # back in the pool after a statement outside a transaction
    with pinned(db):
        pid = db.execute_sql("SELECT pg_backend_pid()").fetchone()[0]
        assert not db.is_closed()
        with db.atomic():
            assert db.execute_sql("SELECT pg_backend_pid()").fetchone()[0] == pid
        assert db.execute_sql("SELECT pg_backend_pid()").fetchone()[0] == pid
    assert db.is_closed()
    assert db._in_use == {}
    db.close_all()
