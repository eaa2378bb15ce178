"""storage/shared_state.py on a real Redis: the quota ledger admits exactly up to the limit across replicas and
threads, forgets ended jobs and dead replicas; login tokens are shared, stored hashed, and deletable as Gradio's
logout deletes them; claims on sessions have one first owner, however many replicas race for them. Without Redis,
the ledger counts this replica's queue alone, as before, and claims live in process memory."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from settings import Settings
from storage.shared_state import (
    PENDING_S,
    Claims,
    ClaimsFull,
    JobLedger,
    SharedState,
    SharedTokens,
    open_shared_state,
)


@pytest.fixture
def client(redis_db: str) -> redis.Redis:
    return redis.Redis.from_url(redis_db, decode_responses=True)


def test_without_redis_the_local_queue_is_the_whole_count() -> None:
    ledger = JobLedger()
    assert ledger.admit("alice", {"e1", "e2"}, 3) == (True, 2, None)
    assert ledger.admit("alice", {"e1", "e2", "e3"}, 3) == (False, 3, None)
    ledger.sync({"alice": {"e1"}})  # nothing to publish, nothing fails
    state = SharedState()
    assert state.limits_storage() == ("memory://", {})
    assert state.login_tokens() is None
    assert state.agree_cookie_id("own") == "own"


def test_two_replicas_admit_exactly_up_to_the_limit(client: redis.Redis) -> None:
    a, b = JobLedger(client), JobLedger(client)
    verdicts = [ledger.admit("alice", set(), 3)[:2] for ledger in (a, b, a, b, a)]
    assert verdicts == [(True, 0), (True, 1), (True, 2), (False, 3), (False, 3)]
    assert a.admit("bob", set(), 3)[0]  # another user has a count of their own


def test_concurrent_admissions_never_overshoot(client: redis.Redis) -> None:
    replicas = [JobLedger(client) for _ in range(6)]
    start = threading.Barrier(len(replicas))

    def admit(ledger: JobLedger, user: str) -> bool:
        start.wait()  # all replicas ask at the same moment, for the one place left
        return ledger.admit(user, set(), 1)[0]

    with ThreadPoolExecutor(len(replicas)) as pool:
        for round_ in range(20):
            verdicts = list(pool.map(admit, replicas, [f"user-{round_}"] * len(replicas)))
            assert verdicts.count(True) == 1, (round_, verdicts)


def test_a_job_counts_once_as_ticket_then_as_queued_and_leaves_when_it_ends(client: redis.Redis) -> None:
    a, b = JobLedger(client), JobLedger(client)
    _, _, ticket = a.admit("alice", set(), 2)
    assert ticket
    # In A's queue, the job carries its ticket as its id: counted once on A, once for B.
    assert a.admit("alice", {ticket}, 2)[:2] == (True, 1)
    assert b.admit("alice", set(), 2)[:2] == (False, 2)
    a.sync({"alice": {ticket}})
    assert b.admit("alice", set(), 2)[:2] == (False, 2)
    a.clock = lambda: time.monotonic() + PENDING_S + 1  # the second ticket never joined (another input refused)
    a.sync({})  # and the first one's job ended
    assert b.admit("alice", set(), 2)[:2] == (True, 0)


def test_a_ticket_still_joining_keeps_counting(client: redis.Redis) -> None:
    a, b = JobLedger(client), JobLedger(client)
    a.admit("alice", set(), 1)
    a.sync({})  # its job is not in the queue yet: within PENDING_S it is on its way
    assert b.admit("alice", set(), 1)[:2] == (False, 1)
    assert a.admit("alice", set(), 1)[:2] == (False, 1)  # A counts its own ticket too


def test_a_dead_replicas_jobs_stop_counting_after_their_lease(client: redis.Redis) -> None:
    dead, alive = JobLedger(client, lease_s=0.3), JobLedger(client)
    dead.admit("alice", set(), 1)
    dead.sync({"alice": {"e1"}})
    assert alive.admit("alice", set(), 1)[0] is False
    deadline = time.monotonic() + 30
    while not alive.admit("alice", set(), 1)[0]:  # nobody renews the dead replica's leases
        assert time.monotonic() < deadline, "the dead replica's jobs never lapsed"
        time.sleep(0.1)
    assert client.zcard("atelier:jobs:alice") == 1  # only the live replica's ticket is left


def test_a_replica_that_stops_cleanly_withdraws_its_jobs(redis_db: str) -> None:
    stopping = open_shared_state(Settings(redis_url=redis_db))
    other = JobLedger(redis.Redis.from_url(redis_db, decode_responses=True))
    stopping.jobs.admit("alice", set(), 2)
    stopping.jobs.sync({"alice": {"e1"}})
    assert other.admit("alice", set(), 2)[:2] == (False, 2)
    stopping.close()
    assert other.admit("alice", set(), 2)[:2] == (True, 0)


def test_a_live_replica_renews_its_leases(client: redis.Redis) -> None:
    a, b = JobLedger(client, lease_s=0.5), JobLedger(client)
    a.sync({"alice": {"e1"}})
    for _ in range(6):  # 1.2 s: more than two leases, each renewed in time
        time.sleep(0.2)
        a.sync({"alice": {"e1"}})
        assert b.admit("alice", set(), 1)[0] is False


def test_login_tokens_are_shared_hashed_and_deletable(client: redis.Redis) -> None:
    a, b = SharedTokens(client), SharedTokens(client)
    a["t0k3n"] = "alice"
    a["other"] = "bob"
    assert b.get("t0k3n") == "alice"
    assert "t0k3n" in b
    assert "guess" not in b
    assert b.get("guess") is None
    assert not any("t0k3n" in key for key in client.keys("*"))  # Redis holds hashes, never a usable token
    # Gradio's logout: for token in list(app.tokens.keys()): if app.tokens[token] == user: del app.tokens[token]
    for token in list(b.keys()):
        if b[token] == "alice":
            del b[token]
    assert "t0k3n" not in a
    assert a.get("other") == "bob"
    assert len(a) == 1
    with pytest.raises(KeyError):
        del a["t0k3n"]
    assert 0 < client.pttl(next(iter(client.keys("atelier:token:*")))) <= 7 * 86400 * 1000


def test_an_unreachable_redis_is_no_login_and_a_wrong_url_stops_the_start(client: redis.Redis) -> None:
    tokens = SharedTokens(redis.Redis(port=1, socket_connect_timeout=0.5))  # nobody listens on port 1
    assert tokens.get("t0k3n") is None
    with pytest.raises(SystemExit, match=r"ATELIER_REDIS_URL: cannot reach Redis at redis://u:\*\*\*@127.0.0.1:1"):
        open_shared_state(Settings(redis_url="redis://u:secret@127.0.0.1:1/0"))


def test_replicas_agree_on_one_cookie_name(redis_db: str) -> None:
    a = open_shared_state(Settings(redis_url=redis_db))
    b = open_shared_state(Settings(redis_url=redis_db))
    assert a.agree_cookie_id("first") == b.agree_cookie_id("second") == "first"
    assert a.limits_storage()[0] == redis_db
    assert open_shared_state(Settings(redis_url=redis_db, ratelimit_storage="memcached://x:1")).limits_storage() == (
        "memcached://x:1", {})


@pytest.fixture(params=["memory", "redis"])
def claims(request: pytest.FixtureRequest) -> Claims:
    """Claims living 0.5 s past their last use, in process memory or on Redis."""
    if request.param == "memory":
        return Claims(ttl_s=0.5)
    return Claims(redis.Redis.from_url(request.getfixturevalue("redis_db"), decode_responses=True), ttl_s=0.5)


def test_a_claim_is_its_first_users_while_used_and_lapses_after(claims: Claims) -> None:
    assert claims.claim("session:s1", "alice") == "alice"
    assert claims.claim("session:s1", "bob") == "alice"  # taken: Bob learns only that it is not his
    assert claims.claim("upload:s1", "bob") == "bob"  # another kind of id is another claim
    for _ in range(4):  # 0.8 s, each use within the lifetime: still Alice's
        time.sleep(0.2)
        assert claims.claim("session:s1", "alice") == "alice"
    claims.renew({"session:s1"})
    time.sleep(0.3)
    assert claims.owner("session:s1") == "alice"  # renewed, like a session its replica holds
    time.sleep(0.4)
    assert claims.owner("session:s1") is None  # neither used nor renewed: gone
    assert claims.claim("session:s1", "bob") == "bob"


def test_concurrent_first_uses_have_one_winner(redis_db: str) -> None:
    replicas = [Claims(redis.Redis.from_url(redis_db, decode_responses=True)) for _ in range(6)]
    users = ["alice", "bob", "carol"] * 2
    start = threading.Barrier(len(replicas))

    def claim(replica: Claims, user: str, key: str) -> str:
        start.wait()
        return replica.claim(key, user)

    with ThreadPoolExecutor(len(replicas)) as pool:
        for round_ in range(20):
            owners = set(pool.map(claim, replicas, users, [f"session:race-{round_}"] * len(replicas)))
            assert len(owners) == 1, (round_, owners)


def test_a_full_memory_refuses_new_claims_and_never_drops_a_live_one() -> None:
    now = [0.0]
    claims = Claims(ttl_s=10, max_entries=2, clock=lambda: now[0])
    claims.claim("session:a", "alice")
    claims.claim("session:b", "alice")
    with pytest.raises(ClaimsFull):
        claims.claim("session:c", "bob")
    assert claims.claim("session:a", "bob") == "alice"
    now[0] = 11  # both lapsed: their places go to new claims
    assert claims.claim("session:c", "bob") == "bob"
    assert claims.claim("session:a", "bob") == "bob"


def test_a_claim_asked_not_to_be_created_only_finds_or_renews(claims: Claims) -> None:
    assert claims.claim("session:held", "alice", create=False) is None
    assert claims.owner("session:held") is None
    assert claims.claim("session:held", "alice") == "alice"
    assert claims.claim("session:held", "alice", create=False) == "alice"
    assert claims.claim("session:held", "bob", create=False) == "alice"
