"""Two users on one server: isolation on every read path and on Stop, auth on every costly or revealing
route, rate limits (burst, login guessing), the queue quota, and which files may be fetched."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gradio_client import Client

from services.accounts import AccountService
from storage.db import open_database
from storage.files import parse_parameters
from tests.server import serve
from tests.services.conftest import tiny_settings

PASSWORD = "correct horse battery"
APPS: list[Any] = []  # the app under test, to hold its text model still in the quota test
IMAGE: dict[str, Any] = {"prompt": "a private fox", "negative_prompt": "", "width": 64, "height": 64, "steps": 2,
                         "cfg_scale": 7.0, "seed": 42, "sampler": "Euler a", "batch_count": 1}
CHAT: dict[str, Any] = {"temperature": 0.6, "top_p": 0.95, "max_new_tokens": 16}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_sd_dir: Path, tiny_r1_gptq_dir: Path) -> Iterator[str]:
    settings = tiny_settings(tmp_path_factory.mktemp("data"), tiny_sd_dir, tiny_r1_gptq_dir,
                             limit_image_jobs="3/minute", limit_logins="5/minute", user_queue_quota=3)
    settings.ensure_dirs()
    open_database(settings.db_path)
    accounts = AccountService()
    for name in ("alice", "bob", "dave", "erin", "frank", "mallory"):
        accounts.add(name, PASSWORD)
    accounts.add("carol", PASSWORD, admin=True)
    with serve(settings, APPS) as url:
        yield url


def client(server: str, name: str) -> Client:
    return Client(server, auth=(name, PASSWORD), verbose=False, download_files=False)


def logged_in(server: str, name: str) -> httpx.Client:
    http = httpx.Client(base_url=server, timeout=30)
    assert http.post("/login", data={"username": name, "password": PASSWORD}).status_code == 200
    return http


@functools.cache
def config_of(server: str) -> dict[str, Any]:
    # One login for the config: logins are rate limited per account like everything else.
    return logged_in(server, "mallory").get("/config").json()


def fn_index(server: str, api_name: str) -> int:
    return next(d["id"] for d in config_of(server)["dependencies"] if d.get("api_name") == api_name)


@pytest.fixture(scope="module")
def alice(server: str) -> Client:
    return client(server, "alice")


@pytest.fixture(scope="module")
def bob(server: str) -> Client:
    return client(server, "bob")


@pytest.fixture(scope="module")
def alice_work(alice: Client) -> dict[str, Any]:
    *_, gallery, info = alice.predict(**IMAGE, api_name="/generate_image")
    reply = alice.predict(message="my secret plan", conversation_id=None, **CHAT, api_name="/chat")
    job = alice.predict(limit=1, api_name="/history")["jobs"][0]
    return {"job_id": info["job_id"], "file_id": job["files"][0]["id"], "gallery": gallery,
            "conversation_id": reply["conversation_id"]}


def test_unauthenticated_calls_are_refused(server: str) -> None:
    with pytest.raises(Exception, match="credentials|login|401"):
        Client(server, verbose=False)
    join = httpx.post(server + "gradio_api/queue/join", timeout=10, json={
        "data": list(IMAGE.values()), "fn_index": fn_index(server, "generate_image"), "session_hash": "anon"})
    assert join.status_code == 401
    for path in ("api/history", "api/images/1", "api/conversations/1"):
        response = httpx.get(server + path, timeout=10)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"].startswith("Basic")
    assert httpx.get(server + "api/history", timeout=10, auth=("alice", "wrong password")).status_code == 401
    assert httpx.get(server + "api/health", timeout=10).status_code == 200


def test_neither_user_can_reach_the_others_work(server: str, alice: Client, bob: Client,
                                                alice_work: dict[str, Any]) -> None:
    assert all(j["job_id"] != alice_work["job_id"] for j in bob.predict(limit=50, api_name="/history")["jobs"])
    assert bob.predict(limit=50, api_name="/conversations")["conversations"] == []
    with pytest.raises(Exception, match="does not exist"):
        bob.predict(conversation_id=alice_work["conversation_id"], api_name="/conversation")
    with pytest.raises(Exception, match="does not exist"):
        bob.predict(message="let me in", conversation_id=alice_work["conversation_id"], **CHAT, api_name="/chat")
    as_bob, as_alice = ("bob", PASSWORD), ("alice", PASSWORD)
    assert httpx.get(server + "api/history", auth=as_bob, timeout=10).json()["jobs"] == []
    assert httpx.get(server + f"api/images/{alice_work['file_id']}", auth=as_bob, timeout=10).status_code == 404
    assert httpx.get(server + f"api/conversations/{alice_work['conversation_id']}", auth=as_bob,
                     timeout=10).status_code == 404
    # Alice herself gets her things, with the right type and private caching.
    png = httpx.get(server + f"api/images/{alice_work['file_id']}", auth=as_alice, timeout=10)
    assert png.status_code == 200
    assert png.headers["content-type"] == "image/png"
    assert png.headers["cache-control"].startswith("private")
    from io import BytesIO

    from PIL import Image

    assert parse_parameters(Image.open(BytesIO(png.content)).info["parameters"])["Seed"] == "42"
    conv = httpx.get(server + f"api/conversations/{alice_work['conversation_id']}", auth=as_alice, timeout=10)
    assert conv.json()["messages"][0]["content"] == "my secret plan"
    assert [j["job_id"] for j in httpx.get(server + "api/history", auth=as_alice, timeout=10).json()["jobs"]] == [
        alice_work["job_id"]]
    # The Gradio login cookie works for REST too.
    assert logged_in(server, "bob").get("/api/history").json()["jobs"] == []
    assert logged_in(server, "alice").get(f"/api/images/{alice_work['file_id']}").status_code == 200


def test_an_admin_sees_everyones_work(server: str, alice_work: dict[str, Any]) -> None:
    carol = client(server, "carol")
    assert alice_work["job_id"] in [j["job_id"] for j in carol.predict(limit=50, api_name="/history")["jobs"]]
    assert carol.predict(conversation_id=alice_work["conversation_id"], api_name="/conversation")["messages"]
    assert httpx.get(server + f"api/images/{alice_work['file_id']}", auth=("carol", PASSWORD),
                     timeout=10).status_code == 200


def test_only_gradio_cache_files_can_be_fetched(server: str, alice_work: dict[str, Any]) -> None:
    http = logged_in(server, "alice")
    own = alice_work["gallery"][0]["image"]["url"]
    assert http.get(own).status_code == 200  # what the app sent her, from Gradio's cache
    data_dir = Path(alice_work["gallery"][0]["image"]["path"]).parents[3]
    for path in (data_dir / "images", data_dir / "atelier.db", Path("/etc/passwd"),
                 Path(alice_work["gallery"][0]["image"]["path"]).parent / ".." / ".." / ".." / "atelier.db"):
        assert http.get(f"/gradio_api/file={path}").status_code == 403, path
    for png in (data_dir / "images").rglob("*.png"):
        assert http.get(f"/gradio_api/file={png}").status_code == 403, png


def test_nobody_stops_another_users_job(server: str, alice: Client) -> None:
    job = alice.submit(**{**IMAGE, "steps": 40, "seed": 1}, api_name="/generate_image")
    deadline = time.monotonic() + 60
    while not job.outputs():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    event_id = job.communicator.event_id  # Alice's real, running event
    assert event_id
    mallory = logged_in(server, "mallory")
    index = fn_index(server, "generate_image")
    # Neither naming Alice's session nor his own session with her event lets Mallory stop it.
    for session in (alice.session_hash, "mallory-session"):
        refused = mallory.post("/gradio_api/cancel", json={"session_hash": session, "event_id": event_id,
                                                           "fn_index": index})
        assert refused.status_code == 403, session
    *_, info = job.result(timeout=120)
    assert info["status"] == "done"
    assert info["steps"] == 40
    assert alice.predict(limit=1, api_name="/history")["jobs"][0]["status"] == "done"


def test_a_burst_is_cut_at_the_limit_with_retry_after(server: str) -> None:
    dave = logged_in(server, "dave")
    index = fn_index(server, "generate_image")
    answers = [dave.post("/gradio_api/queue/join", json={"data": list({**IMAGE, "steps": 1}.values()),
                                                         "fn_index": index, "session_hash": f"dave-{i}"})
               for i in range(5)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
    assert int(answers[3].headers["retry-after"]) > 0
    assert "Too many image jobs: the limit is 3 per 1 minute" in answers[3].json()["detail"]
    # Another user is not affected by Dave's burst.
    erin = logged_in(server, "erin")
    assert erin.post("/gradio_api/queue/join", json={"data": list({**IMAGE, "steps": 1}.values()),
                                                     "fn_index": index, "session_hash": "erin-0"}).status_code == 200


def test_guessing_a_password_is_throttled(server: str) -> None:
    http = httpx.Client(base_url=server, timeout=10)
    codes = [http.post("/login", data={"username": "bob", "password": f"guess {i}"}).status_code for i in range(7)]
    assert all(code != 200 for code in codes[:5])
    assert codes[5:] == [429, 429]
    blocked = http.post("/login", data={"username": "bob", "password": "guess 9"})
    assert int(blocked.headers["retry-after"]) > 0
    # Other accounts from the same address still log in.
    assert http.post("/login", data={"username": "erin", "password": PASSWORD}).status_code == 200


def test_the_queue_quota_is_enforced_before_queueing(server: str) -> None:
    frank = client(server, "frank")  # nobody else's jobs, and none of his own from other tests
    busy = APPS[0].state.services.chat._run_lock  # held: Frank's replies wait, so his jobs stay in flight
    with busy:
        jobs = [frank.submit(message=f"long {i}", conversation_id=None, **CHAT, api_name="/chat") for i in range(3)]
        deadline = time.monotonic() + 30
        while sum(j.status().code.name in ("PROCESSING", "IN_QUEUE", "ITERATING") for j in jobs) < 3:
            assert time.monotonic() < deadline, [j.status().code.name for j in jobs]
            time.sleep(0.05)
        with pytest.raises(Exception, match="You already have 3 jobs queued or running"):
            frank.predict(message="one more", conversation_id=None, **CHAT, api_name="/chat")
        assert client(server, "carol").predict(limit=1, api_name="/conversations") is not None  # others unaffected
    for job in jobs:
        job.result(timeout=120)  # and once the model is free, his jobs run
