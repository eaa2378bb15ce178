"""Malformed bodies at queue/join, cancel and login get a 4xx and a message from the gateway, never a 500:
values of the wrong JSON type, bodies that are not JSON (or not a form), and bodies over the size cap."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from api.gateway import MAX_BODY_BYTES, MAX_ID_CHARS
from services.accounts import AccountService
from settings import Settings
from storage.db import open_database
from tests.server import serve

PASSWORD = "correct horse battery"
JOIN, CANCEL = "gradio_api/queue/join", "gradio_api/cancel"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # Only the history event runs here, and it needs no model: no tiny model has to be built.
    settings = Settings(profile="tiny", data_dir=tmp_path_factory.mktemp("data"), warmup=False,
                        limit_logins="1000/minute")
    settings.ensure_dirs()
    open_database(settings.db_path)
    AccountService().add("alice", PASSWORD)
    with serve(settings) as url:
        yield url


@pytest.fixture(scope="module")
def alice(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=30) as http:
        assert http.post("/login", data={"username": "alice", "password": PASSWORD}).status_code == 200
        yield http


@pytest.fixture(scope="module")
def history_fn(alice: httpx.Client) -> int:
    return next(d["id"] for d in alice.get("/config").json()["dependencies"] if d.get("api_name") == "history")


def valid(path: str, fn_index: int) -> dict[str, Any]:
    if path == JOIN:
        return {"data": [20, None], "fn_index": fn_index, "session_hash": "s3ss10n", "event_data": None,
                "trigger_id": None}
    return {"session_hash": "s3ss10n", "fn_index": fn_index, "event_id": "0123456789abcdef"}


def refused(answer: httpx.Response, status: int, *words: str) -> None:
    assert answer.status_code == status, answer.text
    detail = answer.json()["detail"]
    assert isinstance(detail, str)
    assert all(word in detail for word in words), detail


def test_well_formed_bodies_still_pass(alice: httpx.Client, history_fn: int) -> None:
    joined = alice.post(JOIN, json=valid(JOIN, history_fn))
    assert joined.status_code == 200, joined.text
    assert "event_id" in joined.json()
    assert alice.post(CANCEL, json=valid(CANCEL, history_fn)).json() == {"success": True}
    assert alice.post("/login", files={"username": (None, "alice"), "password": (None, PASSWORD)}).status_code == 200


WRONG_TYPES = [([1], "an array"), ({"a": 1}, "an object"), (True, "a boolean"), (1.5, "a number"), ("7", "a string")]


@pytest.mark.parametrize("path", [JOIN, CANCEL])
@pytest.mark.parametrize(("field", "expected", "value", "json_name"), [
    (field, expected, value, json_name)
    for field, expected in (("fn_index", "an integer"), ("session_hash", "a string"), ("event_id", "a string"))
    for value, json_name in WRONG_TYPES if json_name != expected])
def test_a_value_of_the_wrong_json_type_is_a_422_naming_it(alice: httpx.Client, history_fn: int, path: str,
                                                            field: str, expected: str, value: Any,
                                                            json_name: str) -> None:
    refused(alice.post(path, json={**valid(path, history_fn), field: value}), 422, field, expected, json_name)


@pytest.mark.parametrize("path", [JOIN, CANCEL])
def test_missing_overlong_or_unknown_values_are_a_422(alice: httpx.Client, history_fn: int, path: str) -> None:
    body = valid(path, history_fn)
    refused(alice.post(path, json={k: v for k, v in body.items() if k != "session_hash"}), 422, "session_hash")
    refused(alice.post(path, json={**body, "session_hash": "s" * (MAX_ID_CHARS + 1)}), 422, "too long")
    if path == JOIN:
        for fn_index in (10**30, -1, 99_999):
            refused(alice.post(path, json={**body, "fn_index": fn_index}), 422, "fn_index is not an event")
        refused(alice.post(path, json={**body, "data": {"prompt": "x"}}), 422, "data must be an array")


@pytest.mark.parametrize("path", [JOIN, CANCEL])
@pytest.mark.parametrize(("raw", "content_type", "status", "words"), [
    (b"{nope", "application/json", 400, ("not valid JSON",)),
    (b"", "application/json", 400, ("not valid JSON",)),
    (b"\xff\xfe\xfa{", "application/json", 400, ("not valid JSON",)),
    (b"[1, 2]", "application/json", 422, ("JSON object", "an array")),
    (b'"x"', "application/json", 422, ("JSON object", "a string")),
    (b"fn_index=1&session_hash=x", "application/x-www-form-urlencoded", 415, ("application/json",)),
])
def test_a_body_that_is_not_a_json_object_is_refused(alice: httpx.Client, path: str, raw: bytes, content_type: str,
                                                     status: int, words: tuple[str, ...]) -> None:
    refused(alice.post(path, content=raw, headers={"content-type": content_type}), status, *words)


def oversized(path: str, history_fn: int) -> bytes:
    """A well-formed body just over the cap."""
    body = valid(path, history_fn) if path != "login" else {}
    filler = MAX_BODY_BYTES - len(json.dumps(body)) + 16
    return json.dumps({**body, "padding": "x" * filler}).encode()


@pytest.mark.parametrize("path", [JOIN, CANCEL, "login"])
def test_an_oversized_body_is_a_413_that_says_the_limit(alice: httpx.Client, history_fn: int, path: str) -> None:
    raw = oversized(path, history_fn)
    kind = "application/json" if path != "login" else "application/x-www-form-urlencoded"
    # Declared up front (refused before it is read) and streamed in chunks with no length (refused mid-way).
    declared = alice.post(path, content=raw, headers={"content-type": kind})
    streamed = alice.post(path, content=(raw[i:i + 65536] for i in range(0, len(raw), 65536)),
                          headers={"content-type": kind})
    for answer in (declared, streamed):
        refused(answer, 413, "too large", "1 MiB", str(MAX_BODY_BYTES))
    assert alice.post(path, content=raw[:MAX_BODY_BYTES], headers={"content-type": kind}).status_code != 413


@pytest.mark.parametrize(("send", "status", "words"), [
    ({"json": {"username": "alice", "password": PASSWORD}}, 415, ("form",)),
    ({"json": {"username": ["alice"], "password": PASSWORD}}, 415, ("form",)),
    ({"content": b"username=alice&username=bob&password=x",
      "headers": {"content-type": "application/x-www-form-urlencoded"}}, 422, ("exactly one username",)),
    ({"data": {"username": "alice"}}, 422, ("exactly one password",)),
    ({"files": {"username": ("name.txt", b"alice"), "password": (None, PASSWORD)}}, 400, ("could not be read",)),
    ({"content": b"--x\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\nalice",
      "headers": {"content-type": "multipart/form-data; boundary=x"}}, 422, ("exactly one",)),  # cut short
    ({"content": b"--x\r\nContent-Disposition: form-data; name=\"username\"; filename=\"a\"\r\n\r\nalice\r\n--x--",
      "headers": {"content-type": "multipart/form-data; boundary=x"}}, 400, ("could not be read",)),
    ({"content": b"&".join(b"f%d=1" % i for i in range(100)),
      "headers": {"content-type": "application/x-www-form-urlencoded"}}, 400, ("could not be read",)),
    ({"content": b"\xff\xfe" * 100, "headers": {"content-type": "text/plain"}}, 415, ("form",)),
])
def test_a_login_that_is_not_one_username_and_one_password_is_refused(server: str, send: dict[str, Any],
                                                                       status: int, words: tuple[str, ...]) -> None:
    with httpx.Client(base_url=server, timeout=30) as http:
        answer = http.post("/login", **send)
        refused(answer, status, *words)
        assert not answer.cookies  # and nobody was logged in


def test_the_gateway_checks_only_fields_gradio_reads_with_the_same_types() -> None:
    # Gradio's own models: a field the gateway checks must be one Gradio's route reads, with the same type.
    from gradio.data_classes import CancelBody, PredictBody, ResetBody

    from api.gateway import JSON_FIELDS

    for route, model in ((JOIN, PredictBody), (CANCEL, CancelBody), ("gradio_api/reset", ResetBody)):
        fields = model.model_fields
        for name, (kind, _) in JSON_FIELDS[f"/{route}"].items():
            assert name in fields, (route, name)
            assert kind.__name__ in str(fields[name].annotation), (route, name, fields[name].annotation)


def test_calls_reach_only_public_endpoints_with_their_own_keywords(alice: httpx.Client) -> None:
    private = next(d["api_name"] for d in alice.get("/config").json()["dependencies"]
                   if d.get("api_visibility") == "private" and d.get("api_name"))
    for name in ("nope", private):
        for path in (f"gradio_api/call/{name}", f"gradio_api/call/v2/{name}"):
            refused(alice.post(path, json={"data": []}), 404, f"no API endpoint /{name}", "/gradio_api/info")
    refused(alice.post("gradio_api/call/v2/history", json={"limit": 3, "nope": 1}), 422, "`nope`")
    refused(alice.post("gradio_api/call/v2/history", json=[3]), 422, "JSON object")
    assert alice.post("gradio_api/call/v2/history", json={"limit": 3}).status_code == 200
    assert alice.post("gradio_api/call/history", json={"data": [3, None]}).status_code == 200
