"""Two replicas sharing one Redis (ATELIER_REDIS_URL), as two apps in one process on one database: a burst or a
run of password guesses spread over both is limited exactly as on one, a user's quota counts their jobs on both,
and a login on one is a login on the other. Without Redis each replica keeps its own, as before."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api import gradio_internals
from api.server import create_app
from services.accounts import AccountService
from services.admission import TICKET_STATE_KEY
from storage.db import open_database
from storage.shared_state import PENDING_S
from tests.live.redis import redis_server
from tests.services.conftest import tiny_settings

PASSWORD = "correct horse battery"
IMAGE: dict[str, Any] = {"prompt": "a shared fox", "negative_prompt": "", "width": 64, "height": 64, "steps": 1,
                         "cfg_scale": 7.0, "seed": 42, "sampler": "Euler a", "batch_count": 1}

Replicas = Callable[..., tuple[TestClient, TestClient]]


@pytest.fixture
def replicas(tmp_path: Path, tiny_sd_dir: Path) -> Replicas:
    """Two apps on one data dir (one SQLite file) with accounts alice and bob; `redis` shared when given.

    No lifespan runs: Gradio's queue holds every job that joins and runs none, so jobs stay queued."""

    def make(redis: str = "", **overrides: Any) -> tuple[TestClient, TestClient]:
        settings = tiny_settings(tmp_path, tiny_sd_dir, redis_url=redis, **overrides)
        settings.ensure_dirs()
        open_database(settings.db_path)
        accounts = AccountService()
        for name in ("alice", "bob"):
            accounts.add(name, PASSWORD)
        return TestClient(create_app(settings)), TestClient(create_app(settings))

    return make


def image_fn(http: TestClient) -> int:
    return next(d["id"] for d in http.get("/config").json()["dependencies"] if d.get("api_name") == "generate_image")


def join(http: TestClient, session: str) -> Any:
    """Queue one image job; the response."""
    return http.post("/gradio_api/queue/join", json={"data": list(IMAGE.values()), "fn_index": image_fn(http),
                                                     "session_hash": session})


def login(http: TestClient, name: str = "alice", password: str = PASSWORD) -> int:
    return http.post("/login", data={"username": name, "password": password}).status_code


def test_a_burst_over_two_replicas_gets_exactly_the_limit(replicas: Replicas, redis_db: str) -> None:
    a, b = replicas(redis_db, limit_image_jobs="4/minute", user_queue_quota=50)
    assert login(a) == login(b) == 200
    codes = [join(http, f"burst-{i}").status_code for i, http in enumerate([a, b] * 4)]
    assert codes == [200] * 4 + [429] * 4
    # bob's own limit is untouched by alice's burst.
    assert login(a, "bob") == 200
    assert join(a, "bob-0").status_code == 200


def test_password_guesses_over_two_replicas_are_throttled_as_on_one(replicas: Replicas, redis_db: str) -> None:
    a, b = replicas(redis_db, limit_logins="5/minute")
    codes = [login(http, "bob", f"guess {i}") for i, http in enumerate([a, b] * 4)]
    assert all(code == 400 for code in codes[:5])
    assert codes[5:] == [429] * 3


def test_the_quota_counts_jobs_on_both_replicas(replicas: Replicas, redis_db: str) -> None:
    a, b = replicas(redis_db, user_queue_quota=3)
    assert login(a) == login(b) == 200
    assert [join(http, f"job-{i}").status_code for i, http in enumerate([a, b, a])] == [200] * 3
    for http in (b, a):
        refused = join(http, "one-more")
        assert refused.status_code == 422
        assert "You already have 3 jobs queued or running (the limit is 3)" in refused.text
    # A job that leaves replica B frees a place, on A too, once B has published its jobs.
    queued = join_and_cancel_one(b)
    sync(b, later_s=PENDING_S)  # the job joined and left before any sync saw it: its ticket lapses
    assert join(a, "after-cancel").status_code == 200, queued
    assert join(b, "over-again").status_code == 422


def join_and_cancel_one(http: TestClient) -> str:
    """Take one of the user's queued jobs off replica `http`'s queue (as Stop does); its event id."""
    app: FastAPI = http.app  # type: ignore[assignment]
    blocks = app.state.janitor.blocks
    event = next(e for q in blocks._queue.event_queue_per_concurrency_id.values() for e in q.queue)
    answer = http.post("/gradio_api/cancel", json={"session_hash": event.session_hash, "event_id": event._id,
                                                   "fn_index": image_fn(http)})
    assert answer.status_code == 200, answer.text
    return event._id


def sync(http: TestClient, later_s: float = 0.0) -> None:
    """One round of the replica's ledger sync (its lifespan runs it every few seconds), `later_s` from now."""
    app: FastAPI = http.app  # type: ignore[assignment]
    ledger = app.state.services.shared.jobs
    ledger.clock = lambda: time.monotonic() + later_s
    ledger.sync(gradio_internals.jobs_by_user(app.state.janitor.blocks, TICKET_STATE_KEY))


def test_a_login_on_one_replica_holds_on_the_other(replicas: Replicas, redis_db: str) -> None:
    a, b = replicas(redis_db)
    with a, b:  # started as a server starts them (lifespans run): nothing there puts Gradio's own tokens back
        check_login_is_shared(a, b)


def check_login_is_shared(a: TestClient, b: TestClient) -> None:
    assert b.get("/config").status_code == 401
    assert login(a) == 200
    b.cookies = a.cookies  # the browser, sent to the other replica by the proxy
    assert b.get("/config").status_code == 200  # Gradio's own check
    assert b.get("/api/history").status_code == 200  # and Atelier's REST routes
    assert b.get("/gradio_api/user").json() == "alice"
    b.get("/logout", follow_redirects=False)  # logging out on B ends the session on A too
    assert a.get("/config").status_code == 401  # though A's client still sends the cookie


def test_without_redis_each_replica_keeps_its_own(replicas: Replicas) -> None:
    a, b = replicas(limit_image_jobs="2/minute", user_queue_quota=50)
    assert login(a) == 200
    b.cookies = a.cookies
    assert b.get("/config").status_code == 401  # Gradio's tokens live in A's memory
    assert login(b) == 200
    assert [join(http, f"solo-{i}").status_code for i, http in enumerate([a, b] * 3)] == [200] * 4 + [429] * 2


def test_a_redis_that_stops_answering_gets_503s_never_500s(replicas: Replicas) -> None:
    with redis_server() as url:
        a, _ = replicas(url, limit_image_jobs="4/minute")
        assert login(a) == 200
        fn_index = image_fn(a)
    # The server is gone: limits cannot be checked, so costly routes are refused, and no session holds.
    answer = a.post("/gradio_api/queue/join", json={"data": list(IMAGE.values()), "fn_index": fn_index,
                                                    "session_hash": "after"})
    assert answer.status_code == 503
    assert "cannot reach its shared state (Redis)" in answer.json()["detail"]
    assert answer.headers["retry-after"] == "10"
    assert login(a) == 503
    assert a.get("/config").status_code == 401
    assert a.get("/api/history", auth=("alice", PASSWORD)).status_code == 503


def test_a_redis_that_goes_between_the_throttle_and_the_session_gets_503s_never_500s(
        replicas: Replicas, redis_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    from storage.shared_state import SharedTokens

    a, _ = replicas(redis_db)
    assert login(a) == 200
    cookies = dict(a.cookies)

    def gone(*args: Any) -> Any:
        raise RedisConnectionError("Connection refused")

    # The throttle still reaches Redis; storing or ending the session does not.
    for name in ("__setitem__", "__delitem__", "__iter__"):
        monkeypatch.setattr(SharedTokens, name, gone)
    a.cookies.clear()
    answer = a.post("/login", data={"username": "alice", "password": PASSWORD})
    assert answer.status_code == 503
    assert "cannot reach its shared state (Redis) to keep your login" in answer.json()["detail"]
    assert answer.headers["retry-after"] == "10"
    assert "set-cookie" not in answer.headers  # no session was handed out
    a.cookies.update(cookies)
    assert a.get("/logout", follow_redirects=False).status_code == 503
    monkeypatch.undo()
    assert a.get("/gradio_api/user").json() == "alice"  # the session it could not end still holds


def test_a_session_or_job_of_one_user_is_refused_to_another_on_either_replica(replicas: Replicas,
                                                                              redis_db: str) -> None:
    a, b = replicas(redis_db, user_queue_quota=50)
    bob_a, bob_b = TestClient(a.app), TestClient(b.app)
    for http, name in ((a, "alice"), (bob_a, "bob")):
        assert login(http, name) == 200
    b.cookies, bob_b.cookies = a.cookies, bob_a.cookies  # the proxy sends each browser to either replica
    answer = join(a, "alice-tab")
    assert answer.status_code == 200
    event = answer.json()["event_id"]
    index = image_fn(a)
    for bob in (bob_b, bob_a):
        for stream in ("/gradio_api/queue/data?session_hash=alice-tab", "/gradio_api/heartbeat/alice-tab",
                       f"/gradio_api/call/generate_image/{event}"):
            assert status_within(bob, stream) == 403, stream
        assert join(bob, "alice-tab").status_code == 403
        for session in ("alice-tab", "bobs-tab"):
            cancel = {"session_hash": session, "event_id": event, "fn_index": index}
            assert bob.post("/gradio_api/cancel", json=cancel).status_code == 403
    assert join(b, "alice-tab").status_code == 200  # still hers, on the other replica too
    queued = [e._id for q in a.app.state.janitor.blocks._queue.event_queue_per_concurrency_id.values()
              for e in q.queue]
    assert event in queued  # and her job was not stopped


def status_within(http: TestClient, path: str, seconds: float = 10) -> int | None:
    """The status of a GET, or None when no answer came in `seconds` (TestClient reads a stream to its end, and
    a stream of a session whose jobs wait forever never ends)."""
    import threading

    found: list[int] = []
    thread = threading.Thread(target=lambda: found.append(http.get(path).status_code), daemon=True)
    thread.start()
    thread.join(seconds)
    return found[0] if found else None


def test_two_users_naming_a_new_session_on_two_replicas_at_once_get_one_owner(replicas: Replicas,
                                                                              redis_db: str) -> None:
    from tests.api.test_isolation_gradio_routes import contest, one_owner

    a, b = replicas(redis_db)
    clients = []
    for name in ("alice", "bob"):
        on_a, on_b = TestClient(a.app), TestClient(b.app)
        assert login(on_a, name) == 200
        on_b.cookies = on_a.cookies
        clients += [(name, on_a), (name, on_b)] * 2
    for round_ in range(8):
        one_owner(contest(clients, lambda http, _, session=f"contested-{round_}": http.get(
            "/gradio_api/deep_link", params={"session_hash": session}).status_code))
