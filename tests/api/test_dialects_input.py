"""Bad input on every route of /v1 and /sdapi/v1, in process: a 4xx in that API's own error shape naming the field,
never a 5xx, and nothing stored; the 401 without a key; the rate limits shared with Gradio's routes."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from api.server import create_app
from services.accounts import AccountService
from services.api_keys import ApiKeyService
from settings import Settings
from storage.db import open_database
from storage.models import Conversation, ImageJob, Message
from tests.services.test_uploads import png_claiming

PASSWORD = "correct horse battery"


def png(size: tuple[int, int] = (64, 64), mode: str = "RGB", color: Any = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str]]:
    yield from serve_alice(tmp_path_factory.mktemp("data"), upload_max_bytes=64 * 1024,
                           limit_image_jobs="100000/minute", limit_chat_messages="100000/minute",
                           limit_reads="100000/minute", limit_logins="100000/minute")


def serve_alice(data_dir: Path, **overrides: Any) -> Iterator[tuple[TestClient, str]]:
    """The app in process on the tiny profile (models load only if a job runs) with the account alice and a key of
    hers: (a test client, the key)."""
    config = Settings(profile="tiny", data_dir=data_dir, warmup=False, **overrides)
    config.ensure_dirs()
    open_database(config.db_path)
    AccountService().add("alice", PASSWORD)
    key, _ = ApiKeyService().create("alice", "tests")
    with TestClient(create_app(config)) as test_client:
        yield test_client, key


def stored() -> tuple[int, int, int]:
    return ImageJob.select().count(), Conversation.select().count(), Message.select().count()


SDAPI_BAD: list[tuple[str, dict[str, Any], str]] = [
    ("txt2img", {"prompt": "a fox", "steps": -1}, "steps"),
    ("txt2img", {"prompt": "a fox", "steps": "many"}, "steps"),
    ("txt2img", {"prompt": "a fox", "width": 0}, "width"),
    ("txt2img", {"prompt": "a fox", "width": 65}, "width"),
    ("txt2img", {"prompt": "a fox", "sampler_name": "Nope"}, "sampler_name"),
    ("txt2img", {"prompt": "a fox", "n_iter": 0}, "n_iter"),
    ("txt2img", {"prompt": "a fox", "batch_size": 50}, "batch_size"),
    ("txt2img", {"prompt": "a fox", "restore_faces": True}, "restore_faces"),
    ("txt2img", {"prompt": "a fox", "styles": ["cinematic"]}, "styles"),
    ("txt2img", {"prompt": "a fox", "script_name": "x/y/z plot"}, "script_name"),
    ("txt2img", {"prompt": "a fox", "override_settings": {"sd_model_checkpoint": "nope.safetensors"}},
     "override_settings.sd_model_checkpoint"),
    ("txt2img", {"prompt": "a fox", "enable_hr": True, "hr_scale": 99}, "hr_scale"),
    ("txt2img", {"prompt": "a fox", "scheduler": "Exponential", "sampler_name": "Euler"}, "scheduler"),
    ("txt2img", {"prompt": ""}, "prompt"),
    ("txt2img", {"prompt": ["not", "text"]}, "prompt"),
    ("img2img", {"prompt": "a fox"}, "init_images"),
    ("img2img", {"prompt": "a fox", "init_images": ["not base64!"]}, "init_images"),
    ("img2img", {"prompt": "a fox", "init_images": [b64(b"GIF89a not a png")]}, "init_images"),
    ("img2img", {"prompt": "a fox", "init_images": [b64(png_claiming(5000, 5000))]}, "init_images"),
    ("img2img", {"prompt": "a fox", "init_images": [b64(png()), b64(png())]}, "init_images"),
    ("img2img", {"prompt": "a fox", "init_images": [b64(png())], "mask": "%%%"}, "mask"),
    ("img2img", {"prompt": "a fox", "init_images": [b64(png())], "mask": b64(png(color="black"))}, "mask"),
    ("img2img", {"prompt": "a fox", "init_images": [b64(png())], "denoising_strength": 2}, "denoising_strength"),
    ("png-info", {"image": "not base64!"}, "image"),
    ("png-info", {"image": b64(b"%PDF-1.7 not an image")}, "image"),
    ("png-info", {}, "image"),
    ("options", {"sd_model_checkpoint": "nope.safetensors"}, "sd_model_checkpoint"),
    ("options", {"sd_vae": 3}, "sd_vae"),
]


@pytest.mark.parametrize(("route", "body", "field"), SDAPI_BAD, ids=[f"{r}-{f}-{i}" for i, (r, _, f) in
                                                                      enumerate(SDAPI_BAD)])
def test_sdapi_refuses_bad_fields_in_a1111s_shape_naming_them(client: tuple[TestClient, str], route: str,
                                                              body: dict[str, Any], field: str) -> None:
    test_client, key = client
    before = stored()
    answer = test_client.post(f"/sdapi/v1/{route}", json=body, headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code in (413, 422), answer.text
    error = answer.json()
    assert set(error) == {"error", "detail", "body", "errors"}
    named = [".".join(str(p) for p in d["loc"][1:]) for d in error["detail"]] if isinstance(error["detail"], list) \
        else []
    assert field in named or field in error["errors"], error
    assert stored() == before


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "tiny-gptq", "messages": [{"role": "user", "content": "hi"}], **fields}


V1_BAD: list[tuple[str, dict[str, Any], int, str | None]] = [
    ("chat/completions", chat(n=2), 400, "n"),
    ("chat/completions", chat(n=0), 400, "n"),
    ("chat/completions", chat(messages=[]), 400, "messages"),
    ("chat/completions", chat(messages=[{"role": "tool", "content": "x"}]), 400, "messages.0.role"),
    ("chat/completions", chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]),
     400, "messages.0.content"),
    ("chat/completions", chat(messages=[{"role": "assistant", "content": "last"}]), 400, "messages"),
    ("chat/completions", chat(max_tokens=0), 400, "max_tokens"),
    ("chat/completions", chat(max_completion_tokens=10**9), 400, "max_completion_tokens"),
    ("chat/completions", chat(temperature=5), 400, "temperature"),
    ("chat/completions", chat(temperature="hot"), 400, "temperature"),
    ("chat/completions", chat(stop=["a", "b", "c", "d", "e"]), 400, "stop"),
    ("chat/completions", chat(thinking_budget=-3), 400, "thinking_budget"),
    ("chat/completions", chat(tools=[{"type": "function"}]), 400, "tools"),
    ("chat/completions", chat(model="gpt-4o"), 404, "model"),
    ("chat/completions", {"messages": [{"role": "user", "content": "hi"}]}, 400, "model"),
    ("images/generations", {"prompt": "a fox", "n": 0}, 400, "n"),
    ("images/generations", {"prompt": "a fox", "n": 99}, 400, "n"),
    ("images/generations", {"prompt": "a fox", "size": "0x0"}, 400, "size"),
    ("images/generations", {"prompt": "a fox", "size": "huge"}, 400, "size"),
    ("images/generations", {"prompt": "a fox", "steps": -1}, 400, "steps"),
    ("images/generations", {"prompt": "a fox", "response_format": "gif"}, 400, "response_format"),
    ("images/generations", {"prompt": "a fox", "model": "dall-e-3"}, 404, "model"),
    ("images/generations", {"prompt": ""}, 400, "prompt"),
    ("images/generations", {}, 400, "prompt"),
]


@pytest.mark.parametrize(("route", "body", "status", "param"), V1_BAD,
                         ids=[f"{r}-{p}-{i}" for i, (r, _, _, p) in enumerate(V1_BAD)])
def test_v1_refuses_bad_fields_in_openais_shape_naming_them(client: tuple[TestClient, str], route: str,
                                                            body: dict[str, Any], status: int,
                                                            param: str | None) -> None:
    test_client, key = client
    before = stored()
    answer = test_client.post(f"/v1/{route}", json=body, headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    assert error["param"] == param
    assert stored() == before


EDITS_BAD: list[tuple[dict[str, Any], dict[str, Any], str]] = [
    ({"image": ("a.png", b"not an image", "image/png")}, {"prompt": "a fox"}, "image"),
    ({"image": ("a.png", png_claiming(5000, 5000), "image/png")}, {"prompt": "a fox"}, "image"),
    ({"image": ("a.png", png(), "image/png")}, {"prompt": "a fox"}, "image"),  # no mask, no transparency
    ({"image": ("a.png", png(), "image/png"), "mask": ("m.png", png(), "image/png")}, {"prompt": "a fox"}, "mask"),
    ({"image": ("a.png", png(), "image/png"), "mask": ("m.png", png((32, 32), "RGBA", (0, 0, 0, 0)),
                                                       "image/png")}, {"prompt": "a fox"}, "mask"),
    ({"image": ("a.png", png((64, 64), "RGBA", (0, 0, 0, 0)), "image/png")}, {"prompt": "a fox", "n": "x"}, "n"),
    ({"image": ("a.png", png((64, 64), "RGBA", (0, 0, 0, 0)), "image/png")}, {"prompt": "a fox", "size": "1x1"},
     "size"),
    ({}, {"prompt": "a fox"}, "image"),
]


@pytest.mark.parametrize(("files", "data", "param"), EDITS_BAD, ids=[f"{p}-{i}" for i, (_, _, p) in
                                                                     enumerate(EDITS_BAD)])
def test_edits_refuse_bad_uploads_naming_the_field(client: tuple[TestClient, str], files: dict[str, Any],
                                                   data: dict[str, Any], param: str) -> None:
    test_client, key = client
    before = stored()
    answer = test_client.post("/v1/images/edits", files=files, data=data, headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == param
    assert stored() == before


def test_huge_bodies_are_refused_before_they_are_read(client: tuple[TestClient, str]) -> None:
    test_client, key = client
    huge = json.dumps({"prompt": "x" * (3 * 1024 * 1024)})
    headers = {"Authorization": f"Bearer {key}", "content-type": "application/json"}
    answer = test_client.post("/v1/chat/completions", content=huge, headers=headers)
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "request_too_large"
    answer = test_client.post("/sdapi/v1/txt2img", content=huge, headers=headers)
    assert answer.status_code == 413
    assert set(answer.json()) == {"error", "detail", "body", "errors"}

    def chunks() -> Iterator[bytes]:  # no length declared: refused as it streams past the limit
        yield b'{"prompt": "'
        for _ in range(40):
            yield b"x" * (128 * 1024)
        yield b'"}'

    answer = test_client.post("/v1/images/generations", content=chunks(), headers=headers)
    assert answer.status_code == 413, answer.text


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("POST", "/v1/images/generations"),
    ("POST", "/v1/images/edits"), ("POST", "/sdapi/v1/txt2img"), ("POST", "/sdapi/v1/img2img"),
    ("GET", "/sdapi/v1/progress"), ("POST", "/sdapi/v1/interrupt"), ("GET", "/sdapi/v1/options"),
    ("GET", "/sdapi/v1/sd-models"), ("GET", "/sdapi/v1/memory"), ("GET", "/api/jobs"), ("GET", "/api/keys"),
])
def test_without_a_valid_key_every_route_answers_401_in_its_shape(client: tuple[TestClient, str], method: str,
                                                                   path: str) -> None:
    test_client, key = client
    for headers in ({}, {"Authorization": "Bearer atl_" + "x" * 43}, {"Authorization": f"Bearer {key}x"}):
        answer = test_client.request(method, path, headers=headers, json={})
        assert answer.status_code == 401, answer.text
        body = answer.json()
        if path.startswith("/v1"):
            assert body["error"]["code"] == "invalid_api_key"
        elif path.startswith("/sdapi"):
            assert body["error"] == "Unauthorized"
            assert set(body) == {"error", "detail", "body", "errors"}
        else:
            assert body["detail"]


def test_sdapi_takes_http_basic_with_the_password_or_a_key_as_a1111s_api_auth(client: tuple[TestClient, str]) -> None:
    test_client, key = client
    assert test_client.get("/sdapi/v1/samplers", auth=("alice", key)).status_code == 200
    assert test_client.get("/sdapi/v1/samplers", auth=("alice", PASSWORD)).status_code == 200
    assert test_client.get("/sdapi/v1/samplers", auth=("bob", key)).status_code == 401  # her key, his name


def test_keys_are_managed_with_a_login_never_with_a_key_nor_from_another_site(client: tuple[TestClient, str]
                                                                              ) -> None:
    test_client, key = client
    assert test_client.get("/api/keys", headers={"Authorization": f"Bearer {key}"}).status_code == 403
    made = test_client.post("/api/keys", json={"name": "from-basic"}, auth=("alice", PASSWORD))
    assert made.status_code == 201
    assert made.json()["key"].startswith("atl_")
    foreign = test_client.post("/api/keys", json={"name": "csrf"}, auth=("alice", PASSWORD),
                               headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403
    assert test_client.delete("/api/keys/from-basic", auth=("alice", PASSWORD)).status_code == 204
    assert test_client.delete("/api/keys/from-basic", auth=("alice", PASSWORD)).status_code == 404


def test_a_model_that_is_loading_answers_503_with_retry_after(client: tuple[TestClient, str]) -> None:
    from services.model_slots import ModelState

    test_client, key = client
    slot = test_client.app.state.services.text_slot
    before = slot.status().state
    slot._set(ModelState.LOADING, "loading the text model")  # as the warm-up does at start
    try:
        answer = test_client.post("/v1/chat/completions", json=chat(), headers={"Authorization": f"Bearer {key}"})
    finally:
        slot._set(before)
    assert answer.status_code == 503
    assert answer.headers["retry-after"]
    assert answer.json()["error"]["code"] == "model_loading"


def test_a_chat_completion_is_checked_and_started_in_one_trip_to_a_worker_thread(
        client: tuple[TestClient, str], monkeypatch: pytest.MonkeyPatch) -> None:
    # Each trip off the event loop is a hand-off the reply waits for before its first token.
    import api.dialects.openai_chat as openai_chat
    from services.chat import ChatHandle, ChatService

    trips: list[str] = []
    real_run_sync = openai_chat.run_sync

    async def counted(fn: Any, *args: Any) -> Any:
        trips.append(getattr(fn, "__name__", repr(fn)))
        return await real_run_sync(fn, *args)

    def answered(self: ChatService, messages: Any, user: str = "", *args: Any, **kwargs: Any) -> ChatHandle:
        handle = ChatHandle(None)  # a reply that has ended already: no model needed
        handle.update(status="done", answer="four", usage={"finish_reason": "stop"})
        self.running.add(handle, user, "chat", "openai", "", kwargs.get("ref"))
        return handle

    monkeypatch.setattr(openai_chat, "run_sync", counted)
    monkeypatch.setattr(ChatService, "start_messages", answered)
    test_client, key = client
    answer = test_client.post("/v1/chat/completions", json=chat(), headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == "four"
    assert len(trips) == 1, trips
