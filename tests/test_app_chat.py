"""Chat and prompt assist through the public API, against a live server with the tiny 4-bit GPTQ R1."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gradio_client import Client

from tests.server import serve
from tests.services.conftest import tiny_settings

CHAT: dict[str, Any] = {"temperature": 0.6, "top_p": 0.95, "max_new_tokens": 48}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_sd_dir: Path, tiny_r1_gptq_dir: Path) -> Iterator[str]:
    with serve(tiny_settings(tmp_path_factory.mktemp("data"), tiny_sd_dir, tiny_r1_gptq_dir)) as url:
        yield url


@pytest.fixture(scope="module")
def client(server: str) -> Client:
    return Client(server, verbose=False, download_files=False)


def test_chat_streams_reasoning_and_answer_apart_and_keeps_the_conversation(client: Client) -> None:
    job = client.submit(message="Hello, who are you?", conversation_id=None, **CHAT, api_name="/chat")
    result = job.result(timeout=120)
    updates = job.outputs()
    assert len(updates) >= 2  # streamed, not one final blob
    assert {"reasoning", "answer", "conversation_id"} <= set(updates[0])
    assert result["status"] == "done"
    assert result["reasoning"]  # the tiny profile's thinking budget forces </think>, so both parts exist
    assert result["answer"]
    assert result["usage"]["reasoning_tokens"] <= 32
    cid = result["conversation_id"]
    second = client.predict(message="And then?", conversation_id=cid, **CHAT, api_name="/chat")
    assert second["conversation_id"] == cid
    conv = client.predict(conversation_id=cid, api_name="/conversation")
    assert [m["role"] for m in conv["messages"]] == ["user", "assistant", "user", "assistant"]
    assert conv["messages"][1]["reasoning"] == result["reasoning"]
    assert conv["messages"][1]["content"] == result["answer"]
    assert conv["messages"][1]["model"].startswith("atelier-tiny-r1-gptq-4bit")
    listed = client.predict(limit=10, api_name="/conversations")["conversations"]
    assert listed[0]["conversation_id"] == cid
    assert listed[0]["title"] == "Hello, who are you?"


def test_bad_chat_input_is_refused_before_queueing(client: Client) -> None:
    with pytest.raises(Exception, match="message must not be empty"):
        client.predict(message="  ", conversation_id=None, **CHAT, api_name="/chat")
    with pytest.raises(Exception, match="top_p must be greater than 0"):
        client.predict(message="hi", conversation_id=None, **{**CHAT, "top_p": 0}, api_name="/chat")
    with pytest.raises(Exception, match="conversation 424242 does not exist"):
        client.predict(message="hi", conversation_id=424242, **CHAT, api_name="/chat")


def test_the_thinking_budget_is_an_api_option(client: Client) -> None:
    short = client.predict(message="Hi", conversation_id=None, **CHAT, thinking_budget=3, api_name="/chat")
    assert short["status"] == "done"
    assert 1 <= short["usage"]["reasoning_tokens"] <= 3  # not the profile's 32
    assert short["answer"]
    with pytest.raises(Exception, match="thinking_budget must be empty"):
        client.predict(message="Hi", conversation_id=None, **CHAT, thinking_budget=-2, api_name="/chat")
    # Everything but the message is optional: a new conversation with the server's defaults.
    assert client.predict(message="Only a message", api_name="/chat")["status"] == "done"


def stored_reply(client: Client, cid: int) -> dict[str, Any]:
    """The reply of a one-turn conversation, once it is recorded (as soon as the model has stopped)."""
    deadline = time.monotonic() + 60
    while len(messages := client.predict(conversation_id=cid, api_name="/conversation")["messages"]) < 2:
        assert time.monotonic() < deadline, "the reply was never recorded"
        time.sleep(0.1)
    return messages[1]


def stopped_mid_way(stop_one: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    """The stored reply of the first of a few long replies that `stop_one(message)` stopped mid-way.

    The tiny model's random weights may end a reply by themselves before the stop lands (the API takes no
    seed), so this asks again, a few times at most, until one is stopped mid-way."""
    for attempt in range(5):
        reply = stop_one(f"Think for a very long time, take {attempt + 1}")
        if reply["status"] == "cancelled":
            return reply
    raise AssertionError(f"no reply was stopped mid-way in 5 tries; the last one: {reply}")


def test_cancelling_a_chat_stops_it_and_keeps_the_partial_reply(client: Client) -> None:
    def cancel(message: str) -> dict[str, Any]:
        job = client.submit(message=message, conversation_id=None, **{**CHAT, "max_new_tokens": 4000},
                            api_name="/chat")
        deadline = time.monotonic() + 60
        while not job.done() and not any(o.get("reasoning") for o in job.outputs()):
            assert time.monotonic() < deadline, "the reply never started"
            time.sleep(0.05)
        job.cancel()
        return stored_reply(client, job.outputs()[-1]["conversation_id"])

    reply = stopped_mid_way(cancel)
    assert reply["reasoning"]  # the partial reply is kept
    assert reply["completion_tokens"] < 4000
    # The text queue is free again.
    assert client.predict(message="next", conversation_id=None, **CHAT, api_name="/chat")["status"] == "done"


def test_assist_prompt_fills_prompt_and_negative_prompt(client: Client) -> None:
    # The tiny model's random weights sometimes end the answer at once (an empty prompt, which is right), and
    # the API takes no seed: ask a few times until one answer is written, and check where it lands.
    for attempt in range(5):
        prompt, negative = client.predict(idea=f"a fox in the snow, take {attempt + 1}", api_name="/assist_prompt")
        assert isinstance(prompt, str)
        assert isinstance(negative, str)
        if prompt:
            break
    assert prompt, "no answer landed in the prompt box in 5 tries"
    with pytest.raises(Exception, match="idea must not be empty"):
        client.predict(idea="", api_name="/assist_prompt")


def test_health_reports_the_text_model(client: Client, server: str) -> None:
    import json
    import urllib.request

    # The model loads with the first reply (no warm-up here): one short reply, so this test stands on its own.
    client.predict(message="hi", conversation_id=None, **{**CHAT, "max_new_tokens": 1}, api_name="/chat")
    with urllib.request.urlopen(server + "api/health", timeout=10) as response:
        health = json.loads(response.read())
    text = health["models"]["text"]
    assert text["state"] == "ready"
    assert text["quantization"].startswith("GPTQ 4-bit")
    # The GPTQ kernel and why it was chosen (pipelines/gptq_kernels.py): on the CPU gptqmodel's own choice.
    assert text["kernel"] == "TorchAtenLinear"
    assert text["kernel_choice"]["requested"] == "auto"
    assert text["kernel_choice"]["reason"] == "on cpu gptqmodel picks its own kernel"
    assert (text["cache"], text["compile"]) == ("dynamic", False)
    assert health["memory"] == {"idle_policy": "resident", "keep_alive_s": 300.0}


def test_closing_the_tab_stops_the_reply(client: Client, server: str) -> None:
    import httpx

    config = httpx.get(server + "config", timeout=10).json()
    fn_index = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "chat")

    def close_tab(message: str) -> dict[str, Any]:
        session = f"closing-tab-test-{message[-1]}"
        joined = httpx.post(server + "gradio_api/queue/join", timeout=10, json={
            "data": [message, None, 0.6, 0.95, 4000, None], "fn_index": fn_index,
            "session_hash": session, "event_data": None, "trigger_id": None})
        assert joined.status_code == 200
        with httpx.stream("GET", server + f"gradio_api/queue/data?session_hash={session}", timeout=60) as stream:
            streamed = 0
            for line in stream.iter_lines():  # read a few streamed updates, then go away like a closed tab
                streamed += "process_generating" in line
                if streamed >= 3:
                    break
        # Its conversation was created before the reply began streaming.
        listed = client.predict(limit=10, api_name="/conversations")["conversations"]
        return stored_reply(client, next(c["conversation_id"] for c in listed if c["title"] == message))

    reply = stopped_mid_way(close_tab)
    assert reply["completion_tokens"] < 4000


def test_the_chat_example_prints_reasoning_then_answer(server: str) -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    # The random model sometimes writes an empty reasoning or answer (then that part is not printed): a few tries.
    for attempt in range(5):
        done = subprocess.run([sys.executable, str(root / "examples" / "chat.py"), f"Hello there, take {attempt}",
                               "--url", server, "--max-new-tokens", "24", "--thinking-budget", "4"],
                              capture_output=True, text=True, timeout=120, check=True)
        out = done.stdout
        if "── Thinking ──" in out and "── Answer ──" in out:
            break
    assert out.index("── Thinking ──") < out.index("── Answer ──")
    assert " · done · thought " in out
