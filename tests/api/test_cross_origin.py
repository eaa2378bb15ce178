"""Pages of other sites, with two accounts: a change sent with Alice's login cookie by another site's page is refused
(403) unless the owner trusts that site (ATELIER_CORS_ORIGINS), which alone gets CORS headers; a change sent with an
API key (Authorization: Bearer) is let in from anywhere, as no page can borrow a key, but only as the key's own user;
Gradio's routes no longer hand any site the user's answers."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from api.server import create_app
from services.accounts import AccountService
from settings import Settings
from storage.db import open_database
from storage.models import Collection

PASSWORD = "correct horse battery"
HOME = "https://atelier.example"
TRUSTED = "https://studio.example.com"
EVIL = "https://evil.example"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    config = Settings(profile="tiny", data_dir=tmp_path_factory.mktemp("data"), warmup=False,
                      limit_reads="100000/minute", cors_origins=[TRUSTED + "/"])
    config.ensure_dirs()
    open_database(config.db_path)
    for name in ("alice", "bob"):
        AccountService().add(name, PASSWORD)
    return create_app(config)


@pytest.fixture(scope="module")
def alice(app: Any) -> TestClient:
    http = TestClient(app, base_url=HOME)
    assert http.post("/login", data={"username": "alice", "password": PASSWORD}).status_code == 200
    return http


@pytest.fixture(scope="module")
def keys(app: Any) -> dict[str, str]:
    return {name: app.state.services.api_keys.create(name, "elsewhere")[0] for name in ("alice", "bob")}


def page_of(origin: str) -> dict[str, str]:
    """The headers a browser adds to a request a page of `origin` sends to Atelier."""
    return {"origin": origin, "sec-fetch-site": "cross-site", "sec-fetch-mode": "cors"}


def made(name: str) -> bool:
    return Collection.select().where(Collection.name == name).exists()


def test_a_cookie_request_from_another_site_is_refused_and_gets_no_cors(alice: TestClient) -> None:
    answer = alice.post("/api/collections", json={"name": "forged"}, headers=page_of(EVIL))
    assert answer.status_code == 403
    assert "another site" in answer.json()["detail"]
    assert "access-control-allow-origin" not in answer.headers
    assert not made("forged")
    preflight = alice.options("/api/collections", headers={"origin": EVIL, "access-control-request-method": "POST"})
    assert "access-control-allow-origin" not in preflight.headers


def test_a_trusted_site_may_use_the_cookie_with_cors_headers(alice: TestClient) -> None:
    preflight = alice.options("/api/collections", headers={
        "origin": TRUSTED, "access-control-request-method": "POST",
        "access-control-request-headers": "content-type"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == TRUSTED
    assert preflight.headers["access-control-allow-credentials"] == "true"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    answer = alice.post("/api/collections", json={"name": "from the studio"}, headers=page_of(TRUSTED))
    assert answer.status_code == 201, answer.text
    assert answer.headers["access-control-allow-origin"] == TRUSTED
    assert answer.headers["access-control-allow-credentials"] == "true"
    assert "Origin" in answer.headers["vary"]
    export = alice.post("/api/history/export", json={"all": True}, headers=page_of(TRUSTED))
    assert "X-Atelier-Jobs" in export.headers["access-control-expose-headers"]  # its progress, readable there


def test_an_api_key_works_from_any_site_but_only_as_its_user(app: Any, alice: TestClient,
                                                             keys: dict[str, str]) -> None:
    plain = TestClient(app, base_url=HOME)  # no cookie: the key alone
    bearer = {"authorization": f"Bearer {keys['alice']}", **page_of(EVIL)}
    answer = plain.post("/api/collections", json={"name": "by key"}, headers=bearer)
    assert answer.status_code == 201, answer.text
    assert "access-control-allow-origin" not in answer.headers  # the page itself still cannot read it
    mine = answer.json()["collection_id"]
    # Bob's key, from the same site: Alice's collection is not his.
    bob = {"authorization": f"Bearer {keys['bob']}", **page_of(EVIL)}
    assert plain.delete(f"/api/collections/{mine}", headers=bob).status_code == 404
    assert plain.patch(f"/api/collections/{mine}", json={"name": "bob's"}, headers=bob).status_code == 404
    # Beside the cookie, a made-up key or Bob's key proves nothing about Alice: the cookie's request is refused.
    for key in ("atl_" + "x" * 40, keys["bob"]):
        forged = alice.post("/api/collections", json={"name": "forged 2"},
                            headers={"authorization": f"Bearer {key}", **page_of(EVIL)})
        assert forged.status_code == 403
    assert not made("forged 2")
    assert made("by key")


def test_gradio_routes_no_longer_hand_any_site_the_users_answers(alice: TestClient) -> None:
    foreign = alice.get("/gradio_api/info", headers={"origin": EVIL})
    assert "access-control-allow-origin" not in foreign.headers
    preflight = alice.options("/gradio_api/queue/join", headers={"origin": EVIL, "access-control-request-method":
                                                                 "POST"})
    assert "access-control-allow-origin" not in preflight.headers
    trusted = alice.get("/gradio_api/info", headers={"origin": TRUSTED})
    assert trusted.headers["access-control-allow-origin"] == TRUSTED


@pytest.mark.parametrize("origin", ["*", "null", "https://studio.example.com/app", "studio.example.com"])
def test_an_origin_setting_that_is_not_one_origin_is_refused(origin: str) -> None:
    with pytest.raises(ValidationError, match="is not an origin"):
        Settings(cors_origins=[origin])
