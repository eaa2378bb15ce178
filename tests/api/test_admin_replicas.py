"""An admin's changes on one replica apply on the other (two apps sharing Redis and one database): a user's own
limits and quota, and disabling an account, which ends what its login cookie can do on both."""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi.testclient import TestClient

from services.accounts import AccountService
from tests.api import test_replicas_redis as shared
from tests.api.test_replicas_redis import Replicas, join, login

replicas = shared.replicas  # the two-replica fixture


def eventually(check: Callable[[], bool], within_s: float = 5.0) -> None:
    """Wait for `check` (a replica hears of a change within a second: the generation counter's poll)."""
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, "the other replica never saw the change"
        time.sleep(0.1)


def test_limits_and_disabling_set_on_one_replica_hold_on_the_other(replicas: Replicas, redis_db: str) -> None:
    a, b = replicas(redis_db, limit_image_jobs="50/minute", user_queue_quota=10)
    AccountService().set_admin("alice")
    assert login(a, "alice") == 200
    bob_b = TestClient(b.app)
    assert login(bob_b, "bob") == 200
    assert join(bob_b, "b-1").status_code == 200
    changed = a.patch("/api/admin/limits/bob", json={"image_jobs": "2/minute"})
    assert changed.status_code == 200, changed.text
    # B counts bob's jobs against his new limit (a new rate starts a fresh window: two more, then no more).
    eventually(lambda: join(bob_b, f"b-{time.monotonic()}").status_code == 429)
    refused = join(bob_b, "b-over")
    assert "the limit is 2 per 1 minute" in refused.text
    # The quota too: one job queued on B already, so a quota of 1 refuses the next before it is queued.
    a.patch("/api/admin/limits/bob", json={"image_jobs": None, "queue_quota": 1})
    eventually(lambda: join(bob_b, f"q-{time.monotonic()}").status_code == 422)
    assert "(the limit is 1)" in join(bob_b, "q-over").text
    # Disabled on A: his cookie on B stands for no one.
    assert a.patch("/api/admin/users/bob", json={"disabled": True}).status_code == 200
    eventually(lambda: bob_b.get("/api/history").status_code == 401)
    assert login(TestClient(b.app), "bob") == 400
