"""The running-jobs registry: each user sees and stops only their own jobs; API jobs hold quota places that count
together with the user's jobs in Gradio's queue."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from services.jobs import JobHandle
from services.running import RESERVATION_TTL_S, Quota, QuotaExceeded, RunningJobs


@dataclass
class Snap:
    version: int
    status: str
    message: str = ""
    step: int = 0
    total: int = 0


def handle() -> JobHandle[Snap]:
    return JobHandle(Snap(0, "running"))


def test_each_user_sees_and_stops_only_their_own_jobs() -> None:
    running = RunningJobs()
    alice, bob = handle(), handle()
    mine = running.add(alice, "alice", "image", "a1111", "a fox")
    theirs = running.add(bob, "bob", "chat", "openai", "hello")
    assert [j.ref for j in running.of("alice")] == [mine.ref]
    assert {j.ref for j in running.of(None)} == {mine.ref, theirs.ref}  # an admin sees all
    assert running.get(theirs.ref, "alice") is None
    assert not running.stop(theirs.ref, "alice")
    assert not bob.stop_event.is_set()
    assert running.stop(mine.ref, "alice")
    assert alice.stop_event.is_set()
    assert running.stop_all("bob", "image") == 0
    assert running.stop_all("bob") == 1
    assert bob.stop_event.is_set()


def test_an_admin_stops_a_ui_job_by_the_event_that_runs_it() -> None:
    running = RunningJobs()
    event = ["ev-1"]
    running.origin = lambda: event[0]  # the web server's event of the caller of add()
    first, second = handle(), handle()
    running.add(first, "alice", "image", "web", "a fox")
    event[0] = "ev-2"
    running.add(second, "bob", "image", "web", "a cat")
    assert not running.stop_origin("ev-3")
    assert not running.stop_origin("")
    assert running.stop_origin("ev-1")
    assert first.stop_event.is_set()
    assert not second.stop_event.is_set()


def test_finished_jobs_leave_the_registry() -> None:
    running = RunningJobs()
    job = handle()
    running.add(job, "alice", "image")
    job.update(status="done")
    assert running.of("alice") == []


def test_api_jobs_count_with_the_users_gradio_jobs_and_the_place_is_taken_atomically() -> None:
    running = RunningJobs()
    in_gradio = {"alice": {"event-1"}}
    quota = Quota(limit=2, enforced=True, elsewhere=lambda: in_gradio)
    ref = running.reserve("alice", "image", "a1111", quota)  # 1 in Gradio's queue + this one = 2
    with pytest.raises(QuotaExceeded, match="the limit is 2"):
        running.reserve("alice", "chat", "openai", quota)
    running.reserve("bob", "image", "a1111", quota)  # another user's count is their own
    # Gradio's side (the UI's validators, the replicas' ledger) counts the reservation too.
    assert running.with_reserved(in_gradio)["alice"] == {"event-1", ref}
    started = running.add(handle(), "alice", "image", "a1111", "a fox", ref=ref)
    assert started.ref == ref
    assert started.reserved
    with pytest.raises(QuotaExceeded):
        running.reserve("alice", "image", "a1111", quota)
    started.handle.update(status="done")
    running.reserve("alice", "image", "a1111", quota)  # its place is free again


def test_a_reservation_whose_job_never_started_is_given_back() -> None:
    now = [0.0]
    running = RunningJobs(clock=lambda: now[0])
    quota = Quota(limit=1, enforced=True)
    ref = running.reserve("alice", "image", "a1111", quota)
    running.release(ref)
    ref = running.reserve("alice", "image", "a1111", quota)
    with pytest.raises(QuotaExceeded):
        running.reserve("alice", "image", "a1111", quota)
    now[0] += RESERVATION_TTL_S + 1  # the request died between the two: the place comes back after a while
    running.reserve("alice", "image", "a1111", quota)
    assert ref not in running.reserved().get("alice", set())


def test_no_quota_where_limits_do_not_apply_and_a_foreign_ref_is_not_taken_over() -> None:
    running = RunningJobs()
    off = Quota(limit=1, enforced=False)
    refs = {running.reserve("", "image", "a1111", off) for _ in range(3)}
    assert len(refs) == 3
    bobs = running.reserve("bob", "image", "a1111", Quota(limit=5, enforced=True))
    # A job of alice's started with bob's ref is listed apart, never on his reservation.
    job = running.add(handle(), "alice", "image", ref=bobs)
    assert job.ref != bobs
    assert running.get(bobs, "bob") is None


def test_each_user_may_have_a_quota_of_their_own() -> None:
    running = RunningJobs()
    own = {"bob": 1}
    quota = Quota(limit=3, enforced=True, limit_of=lambda user: own.get(user, 3))
    running.reserve("bob", "image", "openai", quota)
    with pytest.raises(QuotaExceeded, match=r"the limit is 1\)"):
        running.reserve("bob", "image", "openai", quota)
    for _ in range(3):
        running.reserve("alice", "image", "openai", quota)  # alice keeps the setting's 3
    with pytest.raises(QuotaExceeded, match=r"the limit is 3\)"):
        running.reserve("alice", "image", "openai", quota)
