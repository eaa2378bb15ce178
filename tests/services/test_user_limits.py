"""Per-user limits: an admin's overrides merge over the settings field by field, are checked before anything is
stored, go with the account, and reach every replica (two resolvers over one database and one Redis) within a
second, from a cache that costs one query per user."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from services.accounts import AccountService
from services.user_limits import MAX_AGE_S, RECHECK_S, Limits, LimitsError, UserLimits
from storage.db import open_database
from storage.models import Account, UserLimit
from storage.shared_state import Generations

DEFAULTS = Limits(image_jobs="10/minute", chat_messages="30/minute", uploads="30/minute", reads="240/minute",
                  queue_quota=4)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def accounts(db_location: Path | str) -> AccountService:
    open_database(db_location)
    for name in ("alice", "bob"):
        Account.create(name=name, password_hash="not-a-hash")  # no argon2: these tests never log in
    return AccountService()


def test_overrides_merge_over_the_defaults_field_by_field(accounts: AccountService) -> None:
    limits = UserLimits(DEFAULTS)
    assert limits.effective("alice") is DEFAULTS
    assert limits.effective("") is DEFAULTS
    assert limits.effective(None) is DEFAULTS
    alice = limits.set("alice", by="root", image_jobs="100/hour", queue_quota=8)
    assert (alice.image_jobs, alice.chat_messages, alice.queue_quota) == ("100/hour", "30/minute", 8)
    assert alice.overridden == {"image_jobs", "queue_quota"}
    assert alice.item("image").amount == 100
    assert alice.rate("chat") == "30/minute"
    assert limits.effective("bob") == DEFAULTS
    assert [(o["user"], o["updated_by"], o["overridden"]) for o in limits.overrides()] == [
        ("alice", "root", ["image_jobs", "queue_quota"])]
    # None gives a field back to the default; with nothing left overridden the row goes.
    assert limits.set("alice", by="root", image_jobs=None).overridden == {"queue_quota"}
    assert limits.set("alice", by="root", queue_quota=None) == DEFAULTS
    assert UserLimit.select().count() == 0
    limits.set("bob", by="root", reads="5/second")
    assert limits.clear("bob")
    assert not limits.clear("bob")
    assert limits.effective("bob") == DEFAULTS


@pytest.mark.parametrize(("changes", "message"), [
    ({"queue_quota": 2, "image_jobs": "lots"}, "is not a rate"),  # the good field is not stored either
    ({"image_jobs": "10/minute;5/second"}, "is not a rate"),
    ({"chat_messages": "0/minute"}, "allows nothing"),
    ({"uploads": 10}, "must be a rate"),
    ({"queue_quota": 0}, "queue_quota must be a whole number from 1 to 1000"),
    ({"queue_quota": True}, "queue_quota must be a whole number"),
    ({"queue_quota": "4"}, "queue_quota must be a whole number"),
    ({"logins": "5/minute"}, "unknown limit 'logins'"),
    ({}, "nothing to change"),
])
def test_a_bad_override_is_refused_and_changes_nothing(accounts: AccountService, changes: dict[str, object],
                                                       message: str) -> None:
    limits = UserLimits(DEFAULTS)
    limits.set("alice", by="root", reads="5/second")
    with pytest.raises(LimitsError, match=message):
        limits.set("alice", by="root", **changes)
    assert limits.effective("alice").overridden == {"reads"}


def test_unknown_users_have_no_overrides_and_removed_ones_lose_theirs(accounts: AccountService) -> None:
    limits = UserLimits(DEFAULTS)
    with pytest.raises(LimitsError, match="no user 'carol'"):
        limits.set("carol", by="root", queue_quota=2)
    limits.set("bob", by="root", queue_quota=2)
    accounts.remove("bob")
    assert UserLimit.select().count() == 0


def test_a_bad_default_fails_at_start() -> None:
    with pytest.raises(LimitsError, match="is not a rate"):
        UserLimits(Limits("often", "1/minute", "1/minute", "1/minute", 1))


def test_a_cached_user_costs_no_query(accounts: AccountService, monkeypatch: pytest.MonkeyPatch) -> None:
    limits = UserLimits(DEFAULTS)
    limits.set("alice", by="root", queue_quota=9)
    assert limits.effective("alice").queue_quota == 9

    def no_query(*args: object) -> None:
        raise AssertionError("queried the database for a cached user")

    monkeypatch.setattr(UserLimit, "select", no_query)
    assert limits.effective("alice").queue_quota == 9


def test_a_change_on_one_replica_applies_on_the_other_through_redis(accounts: AccountService, redis_db: str) -> None:
    clock = Clock()
    replicas = [UserLimits(DEFAULTS, Generations(redis.Redis.from_url(redis_db, decode_responses=True)), clock=clock)
                for _ in range(2)]
    a, b = replicas
    assert b.effective("alice") == DEFAULTS  # cached on B
    a.set("alice", by="root", image_jobs="2/minute")
    assert a.effective("alice").image_jobs == "2/minute"  # at once where it changed
    clock.now += RECHECK_S
    assert b.effective("alice").image_jobs == "2/minute"  # within a second on the other
    a.clear("alice")
    clock.now += RECHECK_S
    assert b.effective("alice") == DEFAULTS


def test_without_shared_state_a_change_reaches_other_replicas_after_the_cache_age(accounts: AccountService) -> None:
    clock = Clock()
    a, b = UserLimits(DEFAULTS, Generations(), clock=clock), UserLimits(DEFAULTS, Generations(), clock=clock)
    assert b.effective("alice") == DEFAULTS
    a.set("alice", by="root", queue_quota=1)
    clock.now += RECHECK_S
    assert b.effective("alice").queue_quota == 4  # B cannot know yet
    clock.now += MAX_AGE_S
    assert b.effective("alice").queue_quota == 1
