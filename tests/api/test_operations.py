"""The operations surface of a whole app: /api/health/live and /api/health/ready for orchestrators, /metrics for
this machine, a scraper's token or an admin (Alice) and nobody else (Bob, the network), and an X-Request-ID on
every answer, kept only from a trusted proxy."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.request_id import VALID
from api.server import create_app
from services.accounts import AccountService
from services.model_slots import ModelState
from storage.db import open_database
from tests.services.conftest import tiny_settings

PASSWORD = "correct horse battery"
TOKEN = "scrape-token-0123456789"
PROXY = "10.0.0.1"
LOCAL, REMOTE = ("127.0.0.1", 40000), ("203.0.113.5", 40000)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, tiny_sd_dir: Path) -> Iterator[FastAPI]:
    settings = tiny_settings(tmp_path_factory.mktemp("data"), tiny_sd_dir, metrics_token=TOKEN,
                             trusted_proxies=[PROXY])
    settings.ensure_dirs()
    open_database(settings.db_path)
    AccountService().add("alice", PASSWORD, admin=True)
    AccountService().add("bob", PASSWORD)
    with TestClient(create_app(settings)) as client:  # runs the lifespan: the request log's writer starts
        yield client.app


def http(app: FastAPI, client: tuple[str, int] = REMOTE, user: str | None = None) -> TestClient:
    """A client at `client`'s address, logged in as `user` (a Gradio login cookie) when given."""
    session = TestClient(app, client=client)
    if user is not None:
        assert session.post("/login", data={"username": user, "password": PASSWORD}).status_code == 200
    return session


def test_liveness_and_readiness_answer_probes_without_login(app: FastAPI) -> None:
    remote = http(app)
    assert remote.get("/api/health/live").json() == {"status": "ok"}
    ready = remote.get("/api/health/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "redis": "not configured",
                                      "models": {"image": "not loaded", "text": "not loaded"}}


def test_a_model_that_failed_to_load_makes_the_replica_unready(app: FastAPI) -> None:
    slot = app.state.services.image_slot
    slot._set(ModelState.FAILED, reason="CUDA out of memory")
    try:
        ready = http(app).get("/api/health/ready")
    finally:
        slot._set(ModelState.NOT_LOADED)
    assert ready.status_code == 503
    assert ready.json()["checks"]["models"]["image"] == "the image model failed to load: CUDA out of memory"
    assert http(app).get("/api/health/live").status_code == 200


def scrape(session: TestClient, **headers: str) -> dict[str, float]:
    response = session.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {s.name: s.value for f in text_string_to_metric_families(response.text) for s in f.samples}


def test_metrics_are_for_this_machine_a_token_or_an_admin(app: FastAPI) -> None:
    samples = scrape(http(app, LOCAL))
    assert "atelier_requests_total" in samples
    assert "process_resident_memory_bytes" in samples
    scrape(http(app), authorization=f"Bearer {TOKEN}")
    scrape(http(app, user="alice"))
    # Basic credentials pass the gateway, which counts them against the login throttle like any other login.
    scrape(http(app), authorization="Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode())
    refused = {
        "the network": http(app).get("/metrics"),
        "a wrong token": http(app).get("/metrics", headers={"authorization": "Bearer not-the-token"}),
        "a user who is no admin": http(app, user="bob").get("/metrics"),
        "a user who is no admin, by Basic": http(app).get("/metrics", auth=("bob", PASSWORD)),
        "a wrong password": http(app).get("/metrics", auth=("alice", "not her password")),
        # A proxy on this machine that nobody trusts forwards someone else's request.
        "a forwarded request": http(app, LOCAL).get("/metrics", headers={"x-forwarded-for": "203.0.113.5"}),
        "a forged local address": http(app).get("/metrics", headers={"x-forwarded-for": "127.0.0.1"}),
    }
    assert {why: r.status_code for why, r in refused.items()} == dict.fromkeys(refused, 403)
    assert "ATELIER_METRICS_TOKEN" in refused["the network"].json()["detail"]
    # The trusted proxy forwarding a request from its own machine is not this machine either.
    assert http(app, (PROXY, 1)).get("/metrics", headers={"x-forwarded-for": "127.0.0.1"}).status_code == 403


def test_every_answer_carries_a_request_id_kept_only_from_a_trusted_proxy(app: FastAPI) -> None:
    remote, proxy = http(app), http(app, (PROXY, 1))
    answers = [remote.get("/api/health/live"), remote.get("/api/history"), remote.get("/"),
               remote.get("/api/health/live", headers={"x-request-id": "chosen-by-the-client"})]
    ids = [a.headers["x-request-id"] for a in answers]
    assert answers[1].status_code == 401  # a refusal carries one too
    assert len(set(ids)) == len(ids)
    assert all(VALID.match(i) for i in ids)
    assert "chosen-by-the-client" not in ids
    kept = proxy.get("/api/health/live", headers={"x-request-id": "7F000001:8296_7F00001E:1F90_4F7B0A69_0003:790A"})
    assert kept.headers["x-request-id"] == "7F000001:8296_7F00001E:1F90_4F7B0A69_0003:790A"
    forged = proxy.get("/api/health/live", headers={"x-request-id": "bad id\" injected=1"})
    assert VALID.match(forged.headers["x-request-id"])


async def never_admin(request: object) -> bool:
    return False


@pytest.mark.parametrize(("access", "local", "status"), [("off", True, 404), ("open", False, 200),
                                                         ("protected", False, 403), ("protected", True, 200)])
def test_the_access_setting(access: str, local: bool, status: int) -> None:
    from starlette.applications import Starlette

    from api.metrics_endpoint import metrics_endpoint

    app = Starlette()
    app.add_route("/metrics", metrics_endpoint(access, None, lambda request: local, never_admin))
    assert TestClient(app).get("/metrics").status_code == status


def test_a_hanging_readiness_check_answers_503_in_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    from types import SimpleNamespace

    import api.rest.health

    release = threading.Event()
    calls: list[int] = []

    def hanging(*args: object) -> tuple[bool, dict[str, object]]:
        calls.append(1)
        release.wait(30)
        return True, {}

    monkeypatch.setattr(api.rest.health, "READY_TIMEOUT_S", 0.2)
    monkeypatch.setattr(api.rest.health, "readiness", hanging)
    app = FastAPI()
    app.state.services = SimpleNamespace(image_slot=None, text_slot=None, shared=SimpleNamespace(redis=None))
    app.include_router(api.rest.health.router, prefix="/api")
    with TestClient(app) as client:  # one event loop throughout, as uvicorn's
        try:
            answers = [client.get("/api/health/ready") for _ in range(3)]
        finally:
            release.set()
    assert [a.status_code for a in answers] == [503] * 3
    assert "took longer than 0.2 s" in answers[0].json()["checks"]["timeout"]
    assert len(calls) == 1  # the probes shared the one check under way, leaving no thread per probe
