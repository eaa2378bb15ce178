"""`python app.py db migrate-sqlite-to URL`: a populated SQLite history arrives in PostgreSQL row for row, ids
kept and sequences advanced; running it again adds nothing; a conflicting target is refused untouched."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from api.db_cli import db_main
from storage.connections import make_database
from storage.db import open_database
from storage.models import (
    ALL_MODELS,
    Account,
    ApiKey,
    Collection,
    CollectionItem,
    Conversation,
    ImageFile,
    ImageJob,
    Message,
    RequestLog,
    UserLimit,
    UserOption,
    UserSetting,
)
from storage.sqlite_to_postgres import TransferError, copy_sqlite_to

OLD_DUMP = Path(__file__).parent / "data" / "v004.sql"


@pytest.fixture
def populated(tmp_path: Path) -> Path:
    """A SQLite history written by an earlier Atelier, then used by this one; its newest job was deleted."""
    path = tmp_path / "data" / "atelier.db"
    path.parent.mkdir()
    with sqlite3.connect(path) as conn:
        conn.executescript(OLD_DUMP.read_text())
    db = open_database(path)
    for n in range(3):
        job = ImageJob.create(user="bob", backend="diffusers", model="m", prompt=f"p{n} ✓ 'quoted'", width=64,
                              height=64, steps=2, cfg_scale=7.25, seed=2**32 - 1 - n, sampler="Euler", status="done",
                              duration_s=0.1 + n / 3, cache_key="k" * 64 if n else None)
        ImageFile.create(job=job, index=0, path=f"x/{job.id}.png", seed=n, width=64, height=64)
    chat = Conversation.create(user="bob", title="two")
    for position in range(4):
        Message.create(conversation=chat, position=position, role="user" if position % 2 == 0 else "assistant",
                       content=f"m{position}", reasoning_s=1 / 3 if position % 2 else None)
    bob = Account.create(name="bob", password_hash="$argon2id$x")
    ApiKey.create(user="bob", name="laptop", digest="d" * 64, prefix="atl_abcd")  # keys and options are his too
    UserOption.create(user="bob", name="sd_vae", value='"Automatic"')
    UserLimit.create(account=bob, queue_quota=2, updated_by="root")
    RequestLog.create(kind="image", status="done", user="bob", images=1, gpu_s=0.5, job_id=job.id)
    # Issue 25's rows (migration 020), and a favourite.
    ImageJob.update(favourite=True).where(ImageJob.id == job.id - 1).execute()
    CollectionItem.create(collection=Collection.create(user="bob", name="best"), job=job.id - 1)
    UserSetting.create(user="bob", key="retention_days", value="30")
    ImageJob.get_by_id(job.id).delete_instance(recursive=True)  # SQLite never hands its id out again
    db.close()
    return path


def rows(location: Path | str) -> dict[str, list[dict[str, Any]]]:
    db = make_database(location)
    with db.bind_ctx(ALL_MODELS):
        found = {m._meta.table_name: list(m.select().order_by(m.id).dicts()) for m in ALL_MODELS}
    db.close()
    return found


def counts(table_rows: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
    return {table: len(found) for table, found in table_rows.items()}


def test_every_row_arrives_and_a_rerun_adds_nothing(populated: Path, postgres_url: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    before = rows(populated)
    assert counts(before) == {"imagejob": 4, "imagefile": 4, "conversation": 2, "message": 6, "replydraft": 1,
                              "account": 2, "apikey": 1, "useroption": 1, "serversecret": 0, "requestlog": 1,
                              "userlimit": 1, "collection": 1, "collectionitem": 1, "usersetting": 1}
    db_main(["migrate-sqlite-to", postgres_url, "--data-dir", str(populated.parent)])
    assert "imagejob: 4 copied, 0 already there" in capsys.readouterr().out
    assert rows(postgres_url) == before  # every column of every row, ids included
    db_main(["migrate-sqlite-to", postgres_url, "--sqlite", str(populated)])
    assert "imagejob: 0 copied, 4 already there" in capsys.readouterr().out
    assert rows(postgres_url) == before
    # New rows continue after the copied ids, and after the deleted job's id too.
    open_database(postgres_url)
    deleted = max(job["id"] for job in before["imagejob"]) + 1
    assert ImageJob.create(backend="b", model="m", prompt="new", width=64, height=64, steps=1, cfg_scale=7, seed=1,
                           sampler="Euler").id == deleted + 1
    assert Message.create(conversation=1, position=9, role="user").id == len(before["message"]) + 1
    assert Account.create(name="new", password_hash="h").id == 3


def test_a_target_holding_other_rows_is_refused_and_left_unchanged(populated: Path, postgres_url: str) -> None:
    open_database(postgres_url)
    Account.create(name="someone-else", password_hash="h")  # id 1, as the SQLite file's first account
    with pytest.raises(TransferError, match="account row 1 already exists in the target with other values"):
        copy_sqlite_to(populated, postgres_url)
    assert counts(rows(postgres_url)) == {"imagejob": 0, "imagefile": 0, "conversation": 0, "message": 0,
                                          "replydraft": 0, "account": 1, "apikey": 0, "useroption": 0,
                                          "serversecret": 0, "requestlog": 0, "userlimit": 0, "collection": 0,
                                          "collectionitem": 0, "usersetting": 0}


def test_bad_sources_and_targets_are_refused_with_a_message(tmp_path: Path, populated: Path) -> None:
    with pytest.raises(SystemExit, match="there is no SQLite database at"):
        db_main(["migrate-sqlite-to", "postgresql://nobody@127.0.0.1:1/x", "--sqlite", str(tmp_path / "none.db")])
    assert not (tmp_path / "none.db").exists()
    with pytest.raises(SystemExit, match="must be a postgresql:// URL"):
        db_main(["migrate-sqlite-to", "mysql://x/y", "--sqlite", str(populated)])
    with pytest.raises(SystemExit, match="cannot reach the PostgreSQL database"):
        db_main(["migrate-sqlite-to", "postgresql://nobody@127.0.0.1:1/x", "--sqlite", str(populated)])


def test_a_table_without_a_model_stops_the_copy(populated: Path, postgres_url: str) -> None:
    with sqlite3.connect(populated) as conn:
        conn.execute("CREATE TABLE stray (x INTEGER)")
    with pytest.raises(TransferError, match="table stray has no model"):
        copy_sqlite_to(populated, postgres_url)

