"""API keys, per-user API defaults and expiring image links, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from services.accounts import AccountError, AccountService
from services.api_keys import KEY_PREFIX, TOUCH_EVERY, ApiKeyService, digest, looks_like_key
from services.image_links import ImageLinks
from services.preferences import Preferences
from storage.db import open_database
from storage.models import ApiKey, ImageFile, ImageJob


@pytest.fixture
def keys(db_location: Path | str) -> ApiKeyService:
    open_database(db_location)
    accounts = AccountService()
    accounts.add("alice", "correct horse")
    accounts.add("bob", "battery staple")
    return ApiKeyService()


def test_a_key_is_random_prefixed_shown_once_and_stored_only_as_its_digest(keys: ApiKeyService) -> None:
    key, listed = keys.create("alice", "laptop")
    other, _ = keys.create("alice", "phone")
    assert key.startswith(KEY_PREFIX)
    assert len(key) >= len(KEY_PREFIX) + 43
    assert key != other
    assert looks_like_key(key)
    row = ApiKey.get(ApiKey.name == "laptop")
    assert row.digest == digest(key)
    assert key not in (row.digest, row.prefix)
    assert listed == {"name": "laptop", "prefix": f"{key[:10]}…", "created_at": listed["created_at"],
                      "last_used_at": None}
    assert "key" not in keys.list("alice")[0]
    assert [k["name"] for k in keys.list("alice")] == ["laptop", "phone"]


def test_a_key_stands_for_its_user_until_revoked(keys: ApiKeyService) -> None:
    alice, _ = keys.create("alice", "laptop")
    bob, _ = keys.create("bob")
    assert keys.user_of(alice) == "alice"
    assert keys.user_of(bob) == "bob"
    assert keys.user_of(alice[:-1] + ("A" if alice[-1] != "A" else "B")) is None
    assert keys.user_of("atl_" + "x" * 43) is None
    assert keys.user_of("not a key") is None
    assert not keys.revoke("bob", "laptop")  # only her own name revokes her key
    assert keys.revoke("alice", "laptop")
    assert keys.user_of(alice) is None
    assert keys.user_of(bob) == "bob"


def test_names_are_checked_and_unique_per_user(keys: ApiKeyService) -> None:
    keys.create("alice", "laptop")
    keys.create("bob", "laptop")  # another user may use the name
    with pytest.raises(AccountError, match="already has a key named"):
        keys.create("alice", "laptop")
    with pytest.raises(AccountError, match="no user"):
        keys.create("nobody", "x")
    with pytest.raises(AccountError, match="a key's name"):
        keys.create("alice", "../../etc")
    assert [keys.create("alice")[1]["name"], keys.create("alice")[1]["name"]] == ["key-1", "key-2"]


def test_last_use_is_recorded_at_most_once_a_minute(keys: ApiKeyService) -> None:
    key, _ = keys.create("alice", "laptop")
    keys.user_of(key)
    first = ApiKey.get(ApiKey.name == "laptop").last_used_at
    assert first is not None
    keys.user_of(key)
    assert ApiKey.get(ApiKey.name == "laptop").last_used_at == first  # within the minute: no write
    ApiKey.update(last_used_at=first - TOUCH_EVERY - dt.timedelta(seconds=1)).execute()
    keys.user_of(key)
    assert ApiKey.get(ApiKey.name == "laptop").last_used_at > first - TOUCH_EVERY


def test_removing_an_account_takes_its_keys_so_a_new_account_of_that_name_has_none(keys: ApiKeyService) -> None:
    key, _ = keys.create("alice", "laptop")
    AccountService().remove("alice")
    assert keys.user_of(key) is None
    AccountService().add("alice", "a new password")
    assert keys.user_of(key) is None
    assert keys.list("alice") == []


def test_preferences_are_per_user(db_location: Path | str) -> None:
    open_database(db_location)
    preferences = Preferences()
    preferences.set("alice", {"sd_model_checkpoint": "a.safetensors", "sd_vae": ""})
    preferences.set("alice", {"sd_vae": "vae.safetensors"})
    assert preferences.get("alice") == {"sd_model_checkpoint": "a.safetensors", "sd_vae": "vae.safetensors"}
    assert preferences.get("bob") == {}


def test_an_image_link_works_for_its_file_until_it_expires(db_location: Path | str) -> None:
    open_database(db_location)
    job = ImageJob.create(user="alice", backend="diffusers", model="tiny", prompt="a fox", width=8, height=8,
                          steps=1, cfg_scale=7.0, seed=1, sampler="Euler a", status="done")
    first = ImageFile.create(job=job, index=0, path="a.png", seed=1, width=8, height=8)
    second = ImageFile.create(job=job, index=1, path="b.png", seed=2, width=8, height=8)
    now = [1000.0]
    links = ImageLinks(clock=lambda: now[0])
    expires, signature = links.sign(first.id, ttl_s=60)
    assert links.store_key(first.id, expires, signature) == "a.png"
    assert links.store_key(second.id, expires, signature) is None  # another file
    assert links.store_key(first.id, expires + 1, signature) is None  # a longer life
    assert links.store_key(first.id, expires, "0" * 64) is None
    assert links.store_key(first.id, expires, "\x80é") is None  # not even hex: refused, not an error
    # Another replica (a new ImageLinks on the same database) checks links made here.
    assert ImageLinks(clock=lambda: now[0]).store_key(first.id, expires, signature) == "a.png"
    now[0] += 61
    assert links.store_key(first.id, expires, signature) is None
