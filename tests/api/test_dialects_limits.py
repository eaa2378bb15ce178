"""The rate limits are one per user across every way in: the gateway counts /v1, /sdapi/v1 and Gradio's routes
against the same limit, and answers each API in its own shape; a wrong API key counts as a failed login."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.api.test_dialects_input import PASSWORD, serve_alice


@pytest.fixture
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str]]:
    yield from serve_alice(tmp_path_factory.mktemp("data"), mcp="off", limit_image_jobs="3/minute",
                           limit_logins="3/minute")


def test_image_jobs_count_against_one_limit_across_gradio_and_both_apis(client: tuple[TestClient, str]) -> None:
    test_client, key = client
    bearer = {"Authorization": f"Bearer {key}"}
    # Three image requests (refused for their input, which costs a hit as in the UI), one through each way in.
    assert test_client.post("/sdapi/v1/txt2img", json={"prompt": ""}, headers=bearer).status_code == 422
    assert test_client.post("/v1/images/generations", json={"prompt": ""}, headers=bearer).status_code == 400
    login = test_client.post("/login", data={"username": "alice", "password": PASSWORD})
    assert login.status_code == 200
    assert test_client.post("/gradio_api/call/generate_image", json={"data": [""]}).status_code in (200, 422)
    refused = test_client.post("/v1/images/generations", json={"prompt": "a fox"}, headers=bearer)
    assert refused.status_code == 429
    assert refused.headers["retry-after"]
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert "Too many image jobs" in refused.json()["error"]["message"]
    refused = test_client.post("/sdapi/v1/txt2img", json={"prompt": "a fox"}, headers=bearer)
    assert refused.status_code == 429
    assert set(refused.json()) == {"error", "detail", "body", "errors"}
    assert test_client.get("/sdapi/v1/samplers", headers=bearer).status_code == 200  # reads have their own limit


def test_wrong_keys_are_throttled_like_wrong_passwords_and_a_right_key_still_works(client: tuple[TestClient, str]
                                                                                   ) -> None:
    test_client, key = client
    wrong = {"Authorization": "Bearer atl_" + "x" * 43}
    for _ in range(3):
        assert test_client.get("/v1/models", headers=wrong).status_code == 401
    throttled = test_client.get("/v1/models", headers=wrong)
    assert throttled.status_code == 429
    assert "login attempts" in throttled.json()["error"]["message"]
    assert test_client.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200
