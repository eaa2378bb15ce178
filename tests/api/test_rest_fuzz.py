"""The whole REST surface, fuzzed from its own OpenAPI schema (schemathesis): valid and invalid paths, queries
and headers of any size never get a 5xx, and every answer matches the schema (status, content type, body). Gradio's
internal body routes (the image editor's component_server, upload, reset and the routes Atelier refuses), fuzzed
with hypothesis: no form or body of any shape gets a 5xx either."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from schemathesis.checks import positive_data_acceptance, unsupported_method

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


# 100 examples per route keep the fuzzing to about a minute for some thirty routes (the app answers in process, no
# server), while every route still sees huge, negative, empty and non-numeric ids, query values and bodies.
@schema.parametrize()
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_gets_a_server_error_or_an_answer_outside_the_schema(case: Any,
                                                                        app_and_cookie: tuple[Any, str]) -> None:
    # Every check but two: a method a route lacks (TRACE /api/health) falls through to Gradio's catch-all mount
    # at /, which answers 404 rather than 405. That is Starlette routing, not input handling. And values the schema
    # allows are still refused on their meaning (a cursor of another search, `until` before `since`, a collection
    # name already taken, a job id in a body that is not yours), with a 422 naming the field, as the other checks
    # see.
    case.call_and_validate(headers={"Cookie": app_and_cookie[1]},
                           excluded_checks=[unsupported_method, positive_data_acceptance])


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


# --- Gradio's internal body routes ---------------------------------------------------------------------------------
def png(image: Image.Image) -> bytes:
    import io

    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


FORM_NAMES = ["component_id", "fn_name", "id", "type", "index", "session_hash", "file", "files", "data"]
FIELD_VALUES = st.one_of(st.text(max_size=40), st.integers(min_value=-(10**30), max_value=10**30).map(str),
                         st.sampled_from(["null", "accept_blobs", "background", "layer", "composite", "0", "50000000",
                                          "1e9", "NaN", "-1", "110", "ls"]),
                         st.binary(max_size=40).map(lambda b: b.decode("latin-1")))
FILES = st.one_of(st.binary(max_size=512), st.sampled_from([png(Image.new("RGBA", (16, 16))),
                                                            png(Image.new("1", (4096, 4096))), b""]))
BODY_ROUTES = ["/gradio_api/component_server/", "/gradio_api/upload", "/gradio_api/reset",
               "/gradio_api/run/history", "/gradio_api/stream/e1", "/gradio_api/process_recording"]


@pytest.fixture(scope="module")
def gradio_http(app_and_cookie: tuple[Any, str]) -> TestClient:
    http = TestClient(app_and_cookie[0])
    http.headers["Cookie"] = app_and_cookie[1]
    return http


@given(route=st.sampled_from(BODY_ROUTES),
       fields=st.dictionaries(st.one_of(st.sampled_from(FORM_NAMES), st.text(max_size=8)), FIELD_VALUES, max_size=8),
       files=st.lists(st.tuples(st.sampled_from(["file", "files", "x"]), FILES), max_size=3))
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_form_to_a_gradio_body_route_gets_a_server_error(gradio_http: TestClient, route: str,
                                                            fields: dict[str, str], files: list[tuple[str, bytes]]
                                                            ) -> None:
    parts = [(name, ("piece.png", data, "image/png")) for name, data in files]
    answer = gradio_http.post(route, data=fields, files=parts or None)
    assert answer.status_code < 500, (route, fields, answer.text)


@given(route=st.sampled_from(BODY_ROUTES), body=st.one_of(st.binary(max_size=2048), st.from_type(dict).map(
    lambda d: __import__("json").dumps(d, default=str).encode())),
       content_type=st.sampled_from(["application/json", "multipart/form-data", "multipart/form-data; boundary=x",
                                     "application/x-www-form-urlencoded", "text/plain", ""]))
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_raw_body_to_a_gradio_body_route_gets_a_server_error(gradio_http: TestClient, route: str, body: bytes,
                                                                content_type: str) -> None:
    answer = gradio_http.post(route, content=body, headers={"content-type": content_type} if content_type else {})
    assert answer.status_code < 500, (route, body[:80], content_type, answer.text)
