"""Every bad value of every public API event is refused before it is queued, with a message that names the field
and what it allows, as gradio_client (and @gradio/client, which reads the same 422 answer) receives it."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from gradio_client import Client
from gradio_client.exceptions import ValidationError

from settings import Settings
from tests.server import serve

IMAGE: dict[str, Any] = {"prompt": "a lighthouse", "negative_prompt": "", "width": 64, "height": 64, "steps": 4,
                         "cfg_scale": 7.0, "seed": 42, "sampler": "Euler a", "batch_count": 1}
CHAT: dict[str, Any] = {"message": "hi", "conversation_id": None, "temperature": 0.6, "top_p": 0.95,
                        "max_new_tokens": 48, "thinking_budget": None}
VALID: dict[str, dict[str, Any]] = {"/generate_image": IMAGE, "/chat": CHAT, "/assist_prompt": {"idea": "a fox"},
                                    "/history": {}, "/conversations": {}, "/conversation": {}}
SAMPLER_NAMES = re.escape("Euler a, Euler, DPM++ 2M")
# (endpoint, field, bad value, what the message must say the field allows); per field one value out of range and
# one of the wrong type. The defaults of Settings give the numbers.
CASES: list[tuple[str, str, Any, str]] = [
    ("/generate_image", "prompt", "x" * 4001, "at most 4000"),
    ("/generate_image", "prompt", 5, "must be text"),
    ("/generate_image", "negative_prompt", "x" * 4001, "at most 4000"),
    ("/generate_image", "negative_prompt", ["blurry"], "must be text"),
    ("/generate_image", "width", 4096, "between 64 and 2048"),
    ("/generate_image", "width", "wide", "between 64 and 2048"),
    ("/generate_image", "height", 32, "between 64 and 2048"),
    ("/generate_image", "height", None, "between 64 and 2048"),
    ("/generate_image", "steps", 0, "between 1 and 500"),
    ("/generate_image", "steps", "many", "between 1 and 500"),
    ("/generate_image", "cfg_scale", 99, "between 0 and 30"),
    ("/generate_image", "cfg_scale", True, "between 0 and 30"),
    ("/generate_image", "seed", -5, "between (-1|0) and 4294967295"),
    ("/generate_image", "seed", 1.5, "between (-1|0) and 4294967295"),
    ("/generate_image", "sampler", "Nope", SAMPLER_NAMES),
    ("/generate_image", "sampler", 3, SAMPLER_NAMES),
    ("/generate_image", "batch_count", 9, "between 1 and 8"),
    ("/generate_image", "batch_count", "two", "between 1 and 8"),
    ("/assist_prompt", "idea", "x" * 1001, "at most 1000"),
    ("/assist_prompt", "idea", 5, "must be text"),
    ("/chat", "message", "x" * 20001, "at most 20000"),
    ("/chat", "message", 3, "must be text"),
    ("/chat", "conversation_id", 424242, "one of yours, or empty"),
    ("/chat", "conversation_id", "x", "at least 1, or empty"),
    ("/chat", "temperature", 5, "between 0 .*and 2"),
    ("/chat", "temperature", "hot", "between 0 .*and 2"),
    ("/chat", "top_p", 1.5, "0 and (at most )?1"),
    ("/chat", "top_p", [], "0 and (at most )?1"),
    ("/chat", "max_new_tokens", 10**6, "between 1 and 8192"),
    ("/chat", "max_new_tokens", 16.5, "between 1 and 8192"),
    ("/chat", "thinking_budget", -1, "between (0|1) and 8192"),
    ("/chat", "thinking_budget", "x", "between (0|1) and 8192"),
    ("/history", "limit", 0, "between 1 and 200"),
    ("/history", "limit", "ten", "between 1 and 200"),
    ("/history", "before", 0, "at least 1"),
    ("/history", "before", "x", "at least 1"),
    ("/conversations", "limit", 201, "between 1 and 200"),
    ("/conversations", "limit", "x", "between 1 and 200"),
    ("/conversations", "before", -3, "at least 1"),
    ("/conversations", "before", {"id": 1}, "at least 1"),
    ("/conversation", "conversation_id", 0, "at least 1"),
    ("/conversation", "conversation_id", "first", "at least 1"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # No model is linked in: a request that got past validation would have to build and load one.
    settings = Settings(profile="tiny", data_dir=tmp_path_factory.mktemp("data"), warmup=False,
                        limit_image_jobs="1000/minute", limit_chat_messages="1000/minute", limit_reads="1000/minute")
    with serve(settings) as url:
        yield url


@pytest.fixture(scope="module")
def refusals(server: str) -> dict[tuple[str, str, str], Exception | None]:
    """Send every bad request once; what each one raised in gradio_client (None: it was accepted)."""
    client = Client(server, verbose=False, download_files=False)
    found: dict[tuple[str, str, str], Exception | None] = {}
    for api, field, value, _ in CASES:
        try:
            client.predict(**{**VALID[api], field: value}, api_name=api)
            found[api, field, repr(value)] = None
        except Exception as err:
            found[api, field, repr(value)] = err
    return found


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.parametrize(("api", "field", "value", "allowed"), CASES,
                         ids=[f"{api}-{field}-{type(value).__name__}" for api, field, value, _ in CASES])
def test_a_bad_value_is_refused_before_queueing_with_the_field_and_what_it_allows(
        refusals: dict[tuple[str, str, str], Exception | None], api: str, field: str, value: Any,
        allowed: str) -> None:
    err = refusals[api, field, repr(value)]
    # gradio_client raises ValidationError only for the 422 that queue/join answers when a validator refuses.
    assert isinstance(err, ValidationError), f"{api} {field}={value!r} gave {err!r}"
    lines = str(err).splitlines()
    assert lines[0] == "1 parameter(s) failed validation:"  # this field alone, the others were fine
    prefix = f"- {field}: "
    assert lines[1].startswith(prefix)
    message = lines[1].removeprefix(prefix)
    assert field in message or "conversation" in message  # the message itself says which field
    assert re.search(allowed, message), message


def test_nothing_refused_was_queued_run_or_stored(refusals: dict[tuple[str, str, str], Exception | None],
                                                  server: str) -> None:
    assert len(refusals) == len(CASES)
    client = Client(server, verbose=False, download_files=False)
    assert client.predict(api_name="/history") == {"jobs": [], "next_before": None}
    assert client.predict(api_name="/conversations") == {"conversations": [], "next_before": None}
    models = get_json(server + "api/health")["models"]
    assert models["image"]["state"] == "not loaded"  # no job ever reached a model
    assert models["text"]["state"] == "not loaded"


def test_the_message_is_the_same_for_any_client(server: str) -> None:
    """The 422 body that @gradio/client reads: per input, its verdict and message, named after the parameter."""
    info = get_json(server + "gradio_api/info")["named_endpoints"]["/generate_image"]
    names = [p["parameter_name"] for p in info["parameters"]]
    assert names[:len(IMAGE)] == list(IMAGE)  # today's first; the optional ones of issue 13 follow
    defaults = {p["parameter_name"]: p.get("parameter_default") for p in info["parameters"]}
    config = get_json(server + "config")
    fn_index = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "generate_image")
    data = [{**defaults, **IMAGE, "steps": 0}[name] for name in names]  # positional, as @gradio/client sends them
    body = json.dumps({"data": data, "fn_index": fn_index, "session_hash": "messages-test"}).encode()
    request = urllib.request.Request(server + "gradio_api/queue/join", data=body,
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=10)
    assert answer.value.code == 422
    detail = json.loads(answer.value.read())["detail"]
    refused = [d for d in detail if d["is_valid"] is False]
    assert refused == [{"__type__": "validate", "is_valid": False, "parameter_name": "steps",
                        "message": "steps must be between 1 and 500, got 0."}]
