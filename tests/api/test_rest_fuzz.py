"""The whole REST surface, fuzzed from its own OpenAPI schema (schemathesis): valid and invalid paths, queries
and headers of any size never get a 5xx, and every answer matches the schema (status, content type, body)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from PIL import Image
from schemathesis.checks import unsupported_method

from api.server import create_app
from services.accounts import AccountService
from settings import Settings
from storage.db import open_database
from storage.models import Conversation, ImageFile, ImageJob, Message

PASSWORD = "correct horse battery"


def seed(images_dir: Path) -> None:
    """One image job with its PNG and one conversation for alice, so found ids answer 200 too."""
    job = ImageJob.create(user="alice", backend="diffusers", model="tiny", prompt="a fox", width=8, height=8, steps=1,
                          cfg_scale=7.0, seed=1, seed_used=1, sampler="Euler a", status="done")
    Image.new("RGB", (8, 8)).save(images_dir / "fox.png")
    ImageFile.create(job=job, index=0, path="fox.png", seed=1, width=8, height=8)
    conversation = Conversation.create(user="alice", title="hello")
    Message.create(conversation=conversation, position=0, role="user", content="hello")


@pytest.fixture(scope="module")
def app_and_cookie(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, str]:
    # Reads are limited per minute; the fuzzer sends hundreds, and the limit is not what it tests.
    config = Settings(profile="tiny", data_dir=tmp_path_factory.mktemp("data"), warmup=False,
                      limit_reads="100000/minute")
    config.ensure_dirs()
    open_database(config.db_path)
    AccountService().add("alice", PASSWORD)
    seed(config.images_dir)
    app = create_app(config)
    # One login, then its cookie: HTTP basic would hash the password (argon2) on every fuzzed request.
    login = TestClient(app).post("/login", data={"username": "alice", "password": PASSWORD})
    assert login.status_code == 200
    return app, "; ".join(f"{k}={v}" for k, v in login.cookies.items())


@pytest.fixture(scope="module")
def api_schema(app_and_cookie: tuple[Any, str]) -> Any:
    return schemathesis.openapi.from_asgi("/api/openapi.json", app_and_cookie[0])


schema = schemathesis.pytest.from_fixture("api_schema")


# 150 examples per route keep the fuzzing to seconds (the app answers in process, no server), while every
# route still sees huge, negative, empty and non-numeric ids and query values.
@schema.parametrize()
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_gets_a_server_error_or_an_answer_outside_the_schema(case: Any,
                                                                        app_and_cookie: tuple[Any, str]) -> None:
    # Every check but one: a method a route lacks (TRACE /api/health) falls through to Gradio's catch-all mount
    # at /, which answers 404 rather than 405. That is Starlette routing, not input handling.
    case.call_and_validate(headers={"Cookie": app_and_cookie[1]}, excluded_checks=[unsupported_method])


@pytest.mark.parametrize("path", ["/api/images/99999999999999999999", "/api/conversations/99999999999999999999",
                                  "/api/images/9223372036854775808", "/api/images/-1", "/api/images/0",
                                  "/api/images/1e3", "/api/conversations/%00",
                                  "/api/history?before=99999999999999999999", "/api/history?limit=99999999999999999999",
                                  "/api/history?before=x"])
def test_ids_outside_sqlite_range_or_not_numbers_are_refused_with_a_message(app_and_cookie: tuple[Any, str],
                                                                            path: str) -> None:
    answer = TestClient(app_and_cookie[0]).get(path, headers={"Cookie": app_and_cookie[1]})
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["msg"]


def test_the_largest_id_is_still_a_plain_not_found(app_and_cookie: tuple[Any, str]) -> None:
    answer = TestClient(app_and_cookie[0]).get("/api/images/9223372036854775807", headers={"Cookie": app_and_cookie[1]})
    assert answer.status_code == 404
    assert answer.json() == {"detail": "image 9223372036854775807 does not exist."}
