"""Organising history (issue 25): favourites, renaming, collections, deleting many at once with their files and S3
objects, and retention by the upkeep thread; always one user's own (Alice and Bob)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from contracts import InvalidRequest
from storage.blobs import LocalStore, S3Location, S3Store
from storage.db import open_database
from storage.models import Conversation, ImageJob, ReplyDraft, input_path
from tests.live.s3 import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, MotoS3
from tests.services.helpers import Kit, add_chat, add_job, add_stored_job, make_kit


@pytest.fixture
def kit(db_location: Path | str, tmp_path: Path) -> Kit:
    open_database(db_location)
    return make_kit(LocalStore(tmp_path / "images"))


def test_favourites_and_renaming_are_the_owners_alone(kit: Kit) -> None:
    job = add_job("alice", "a cat")
    chat = add_chat("alice", "old title", ("hi", ""))
    assert kit.history.set_favourite(job.id, "bob") is False  # Bob cannot mark Alice's job
    assert kit.history.set_favourite(job.id, "alice") is True
    assert kit.history.get_job(job.id, "alice")["favourite"] is True
    assert kit.history.set_favourite(job.id, "alice", False) is True
    assert ImageJob.get_by_id(job.id).favourite is False
    assert kit.chat.set_favourite(chat.id, "bob") is False
    assert kit.chat.set_favourite(chat.id, "alice") is True
    assert kit.chat.get_conversation(chat.id, "alice")["favourite"] is True
    with pytest.raises(InvalidRequest, match="does not exist"):
        kit.chat.rename_conversation(chat.id, "bob", "mine now")
    assert kit.chat.rename_conversation(chat.id, "alice", "  a   new\ttitle ")["title"] == "a new title"
    assert Conversation.get_by_id(chat.id).title == "a new title"
    for bad in ("", "   ", "x" * 201, None):
        with pytest.raises(InvalidRequest, match="title"):
            kit.chat.rename_conversation(chat.id, "alice", bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="job_id"):
        kit.history.set_favourite(0, "alice")


def test_collections(kit: Kit) -> None:
    a1, a2 = add_job("alice", "one"), add_job("alice", "two")
    b1 = add_job("bob", "bob's")
    best = kit.collections.create("alice", " Best  of ")
    assert best["name"] == "Best of"
    with pytest.raises(InvalidRequest, match="already have"):
        kit.collections.create("alice", "Best of")
    assert kit.collections.create("bob", "Best of")["name"] == "Best of"  # names are per user
    cid = best["collection_id"]
    assert kit.collections.add("alice", cid, [a1.id, a2.id, a1.id]) == {"added": 2, "already": 0}
    assert kit.collections.add("alice", cid, [a2.id]) == {"added": 0, "already": 1}
    with pytest.raises(InvalidRequest, match=str(b1.id)):  # Bob's job is not Alice's to add
        kit.collections.add("alice", cid, [a1.id, b1.id])
    with pytest.raises(InvalidRequest, match="does not exist"):  # nor is Alice's collection Bob's
        kit.collections.add("bob", cid, [b1.id])
    assert kit.collections.get("bob", cid) is None
    assert kit.collections.job_ids("alice", cid) == [a1.id, a2.id]
    listed = kit.collections.list("alice")
    assert [(c["name"], c["jobs"]) for c in listed] == [("Best of", 2)]
    assert listed[0]["cover_file_id"] == a2.files[0].id
    assert kit.collections.remove("alice", cid, [a1.id]) == {"removed": 1}
    assert kit.collections.rename("alice", cid, "Keepers")["name"] == "Keepers"
    kit.history.delete_job(a2.id, "alice")  # a deleted job leaves its collections
    assert kit.collections.get("alice", cid)["jobs"] == 0
    assert kit.collections.delete("bob", cid) is False
    assert kit.collections.delete("alice", cid) is True
    assert kit.collections.list("alice") == []
    assert ImageJob.get_by_id(a1.id)  # the jobs stay


def test_deleting_many_takes_rows_files_and_unused_inputs(kit: Kit) -> None:
    jobs = [add_stored_job(kit.store, "alice", f"job {i}", images=2, inputs=i == 0) for i in range(3)]
    bobs = add_stored_job(kit.store, "bob", "bob's job")
    keys = [f.path for j in jobs for f in j.files]
    wanted = [j.id for j in jobs] + [bobs.id, 10**9]
    assert kit.history.delete_jobs(wanted, "alice") == {"deleted": [j.id for j in jobs], "missing": [bobs.id, 10**9]}
    assert not any(kit.store.exists(k) for k in keys)
    assert not kit.store.exists(input_path(jobs[0].init_image_sha))
    assert kit.store.exists(bobs.files[0].path)  # Bob's job and image are untouched
    assert ImageJob.select().count() == 1
    chats = [add_chat("alice", f"c{i}", ("hello", "")) for i in range(3)]
    bob_chat = add_chat("bob", "b", ("hello", ""))
    done = kit.chat.delete_conversations([c.id for c in chats[:2]] + [bob_chat.id], "alice")
    assert done == {"deleted": [chats[0].id, chats[1].id], "missing": [bob_chat.id]}
    assert [c.id for c in Conversation.select().order_by(Conversation.id)] == [chats[2].id, bob_chat.id]
    with pytest.raises(InvalidRequest, match="at most"):
        kit.history.delete_jobs(range(1, 10_002), "alice")
    with pytest.raises(InvalidRequest, match="ids"):
        kit.chat.delete_conversations(["1"], "alice")  # type: ignore[list-item]


def test_deleting_many_removes_the_s3_objects(db_location: Path | str, tmp_path: Path, s3_server: MotoS3) -> None:
    open_database(db_location)
    bucket = s3_server.create_bucket()
    store = S3Store(S3Location(bucket, "p"), tmp_path / "cache", endpoint_url=s3_server.endpoint_url,
                    region=REGION, access_key_id=ACCESS_KEY_ID, secret_access_key=SECRET_ACCESS_KEY)
    kit = make_kit(store)
    jobs = [add_stored_job(store, "alice", f"job {i}", images=2) for i in range(2)]
    kept = add_stored_job(store, "alice", "kept")
    assert len(s3_server.keys(bucket)) == 5
    kit.history.delete_jobs([j.id for j in jobs], "alice")
    assert s3_server.keys(bucket) == [f"p/{kept.files[0].path}"]


def test_retention_keeps_favourites_collections_and_work_under_way(db_location: Path | str, tmp_path: Path) -> None:
    open_database(db_location)
    kit = make_kit(LocalStore(tmp_path / "images"), server_days=30)
    now = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    old = now - dt.timedelta(days=40)
    expired = add_stored_job(kit.store, "alice", "old", created_at=old)
    favourite = add_job("alice", "old favourite", created_at=old, favourite=True)
    kept = add_job("alice", "old in a collection", created_at=old)
    kit.collections.add("alice", kit.collections.create("alice", "k")["collection_id"], [kept.id])
    running = add_job("alice", "old but running", created_at=old, status="running")
    recent = add_job("alice", "recent", created_at=now - dt.timedelta(days=10))
    bob_recent = add_job("bob", "bob recent", created_at=now - dt.timedelta(days=10))
    stale_chat = add_chat("alice", "stale", ("x", ""), updated=old)
    fav_chat = add_chat("alice", "stale fav", ("x", ""), updated=old, favourite=True)
    busy_chat = add_chat("alice", "stale busy", ("x", ""), updated=old)
    ReplyDraft.create(conversation=busy_chat, answers=busy_chat.messages[0], mode="send")
    fresh_chat = add_chat("alice", "fresh", ("x", ""), updated=now)
    expired_key = expired.files[0].path
    kit.settings.set("bob", "retention_days", 7)  # Bob keeps less than the server does
    assert kit.retention.days("bob") == 7
    assert kit.retention.days("alice") == 30
    assert kit.retention.sweep(now) == {"jobs": 2, "conversations": 1}
    left = {j.id for j in ImageJob.select()}
    assert left == {favourite.id, kept.id, running.id, recent.id}
    assert expired.id not in left
    assert bob_recent.id not in left
    assert not kit.store.exists(expired_key)
    assert {c.id for c in Conversation.select()} == {fav_chat.id, busy_chat.id, fresh_chat.id}
    assert stale_chat.id not in {c.id for c in Conversation.select()}
    assert kit.retention.sweep(now) == {"jobs": 0, "conversations": 0}


def test_retention_is_off_until_someone_sets_it(kit: Kit) -> None:
    add_job("alice", "ancient", created_at=dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    assert kit.retention.days("alice") is None
    assert kit.retention.sweep() == {"jobs": 0, "conversations": 0}
    for bad in (-1, 1.5, "10", 36_501, True):
        with pytest.raises(InvalidRequest, match="retention_days"):
            kit.settings.set("alice", "retention_days", bad)
    with pytest.raises(InvalidRequest, match="not a user setting"):
        kit.settings.set("alice", "colour", 1)
    kit.settings.set("alice", "retention_days", 365)
    assert kit.retention.describe("alice") == {"server_days": None, "user_days": 365, "effective_days": 365}
    assert kit.retention.sweep() == {"jobs": 1, "conversations": 0}
    kit.settings.set("alice", "retention_days", 0)  # 0 removes the setting
    assert kit.settings.all("alice") == {}
