"""Two replicas behind HAProxy (deploy/haproxy.cfg), sharing PostgreSQL, Redis and an S3 store: the scale profile
on loopback. Each replica is its own `python app.py` process, so killing one is a real crash."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gradio_client import Client

from tests.live.haproxy import haproxy_binary
from tests.live.replica import Replica
from tests.live.stack import PASSWORD, Stack, scale_stack

pytestmark = pytest.mark.skipif(haproxy_binary() is None, reason="haproxy is not installed (.ci/run installs it)")

PARAMS: dict[str, Any] = {"prompt": "a lighthouse at dusk", "negative_prompt": "", "width": 64, "height": 64,
                          "steps": 4, "cfg_scale": 7.0, "sampler": "Euler a", "batch_count": 1}
READ_LIMIT = 12


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, postgres_server: Any, redis_url: str, s3_server: Any,
          tiny_sd_dir: Path) -> Iterator[Stack]:
    # Reads limited low, so that a burst over both replicas shows the shared count.
    with scale_stack(tmp_path_factory.mktemp("scale"), tiny_sd_dir, postgres_server.create_database(), redis_url,
                     s3_server, users=("alice", "bob", "carol"),
                     env={"ATELIER_LIMIT_READS": f"{READ_LIMIT}/minute"}) as up:
        yield up


def client(stack: Stack, user: str = "alice") -> Client:
    return Client(stack.url, auth=(user, PASSWORD), verbose=False, download_files=False)


def history(base: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{base.rstrip('/')}/api/history", params={"limit": 100}, auth=("alice", PASSWORD),
                       timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["jobs"]


def replica_of(session: Client, stack: Stack) -> Replica:
    """The replica the proxy sticks this client to, by its sticky cookie (the health answer names the replica)."""
    assert session.cookies.get("ATELIER_REPLICA"), "the proxy set no sticky cookie on the login answer"
    name = httpx.get(f"{stack.url}api/health", cookies=session.cookies, timeout=10).json()["replica"]
    return next(r for r in stack.replicas if r.name == name)


def test_jobs_run_on_both_replicas_and_appear_once_in_one_history(stack: Stack) -> None:
    first, second = client(stack), client(stack)
    assert {replica_of(first, stack).name, replica_of(second, stack).name} == {"r1", "r2"}  # balanced over both
    done = [session.predict(**PARAMS, seed=seed, api_name="/generate_image") for session, seed in
            ((first, 1), (second, 2))]
    assert all(done)
    states = [httpx.get(f"{r.url}/api/health", timeout=10).json()["models"]["image"]["state"] for r in stack.replicas]
    assert states == ["ready", "ready"]  # warm-up is off: each replica loaded its model for a job of its own
    jobs = history(stack.url)
    assert sorted(j["seed"] for j in jobs) == [1, 2]
    assert len({j["job_id"] for j in jobs}) == 2
    assert all(j["status"] == "done" for j in jobs)
    keys = stack.s3.keys(stack.bucket)
    assert sorted(k.rsplit("/", 1)[-1] for k in keys) == sorted(j["files"][0]["file"].rsplit("/", 1)[-1]
                                                               for j in jobs)


def test_every_image_is_served_by_either_replica(stack: Stack) -> None:
    jobs = history(stack.url)
    assert jobs
    for job in jobs:
        file_id = job["files"][0]["id"]
        bodies = [httpx.get(f"{r.url}/api/images/{file_id}", auth=("alice", PASSWORD), timeout=30)
                  for r in stack.replicas]
        assert [b.status_code for b in bodies] == [200, 200]
        assert bodies[0].content == bodies[1].content
        assert bodies[0].content.startswith(b"\x89PNG")


def test_a_burst_over_both_replicas_gets_exactly_the_limit(stack: Stack) -> None:
    codes = [httpx.get(f"{stack.replicas[i % 2].url}/api/history", auth=("bob", PASSWORD), timeout=30).status_code
             for i in range(READ_LIMIT + 6)]
    assert codes == [200] * READ_LIMIT + [429] * 6


def test_a_replica_killed_mid_stream_loses_no_row_and_the_next_job_runs_on_the_other(stack: Stack) -> None:
    session = client(stack)
    before = {j["job_id"]: j for j in history(stack.url)}
    # A job long enough to be caught running: the replica dies while it streams progress.
    job = session.submit(**{**PARAMS, "steps": 200}, seed=3, api_name="/generate_image")
    deadline = time.monotonic() + 120
    while not any(j["seed"] == 3 and j["status"] == "running" for j in history(stack.url)):
        assert time.monotonic() < deadline, "the long job never started"
        time.sleep(0.2)
    victim = replica_of(session, stack)
    victim.kill()
    with pytest.raises(Exception):  # noqa: PT011 - gradio_client reports a dead server in several ways
        job.result(timeout=60)
    # The same client, cookie and login token: the proxy sends it to the live replica, where it is still logged in.
    assert session.predict(**PARAMS, seed=4, api_name="/generate_image")
    after = history(stack.url)
    ids = [j["job_id"] for j in after]
    assert len(ids) == len(set(ids))  # nothing duplicated
    assert before.keys() <= set(ids)  # nothing lost
    by_seed = {j["seed"]: j for j in after if j["job_id"] not in before}
    assert set(by_seed) == {3, 4}
    assert by_seed[4]["status"] == "done"
    assert by_seed[3]["status"] == "running"  # the dead replica's job: kept, never shown as done
    # The dead replica comes back (same name, as a restarted container): it marks its own cut job as failed, while
    # the other replica keeps running.
    victim.start()
    job_3 = next(j for j in history(stack.url) if j["job_id"] == by_seed[3]["job_id"])
    assert (job_3["status"], job_3["error"]) == ("failed", "interrupted: the server stopped while this job ran")


def test_another_users_session_and_result_are_refused_on_both_replicas(stack: Stack) -> None:
    carol = client(stack, "carol")  # logins are throttled per account: Alice has had her share here
    *_, gallery, _ = carol.predict(**PARAMS, seed=5, api_name="/generate_image")
    result = gallery[0]["image"]["path"]
    hers = replica_of(carol, stack)
    assert httpx.get(f"{hers.url}/gradio_api/file={result}", cookies=carol.cookies, timeout=30).status_code == 200
    login = httpx.post(f"{stack.url}login", data={"username": "bob", "password": PASSWORD}, timeout=30)
    assert login.status_code == 200
    for replica in stack.replicas:  # the one holding her session, and the other one (the login holds on both)
        with httpx.Client(base_url=replica.url, cookies=login.cookies, timeout=30) as bob:
            assert bob.get("/gradio_api/queue/data", params={"session_hash": carol.session_hash}).status_code == 403
            assert bob.get(f"/gradio_api/heartbeat/{carol.session_hash}").status_code == 403
            assert bob.get(f"/gradio_api/file={result}").status_code == 403
