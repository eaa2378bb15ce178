"""The OpenAI-compatible text backend against real HTTP servers on loopback: a stand-in written from the
chat-completions streaming API (every reasoning style, usage, Stop, every failure) and llama.cpp's servers
serving the tiny R1 as GGUF, when they are installed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts import TextOptions
from pipelines.loading import ModelUnavailable
from pipelines.openai_backend import OpenAITextBackend, OpenAITextStream, RemoteTextError
from pipelines.reasoning import Chunk
from pipelines.text_base import TextUsage, create_text_backend, text_backend_names
from tests.server import free_port
from tests.standins.openai_server import Script, StandinOpenAI
from tests.standins.serving import serve_asgi, wait_for

KEY = "sk-atelier-test"
MODEL = "deepseek-r1-standin"
HELLO = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def standin() -> Iterator[tuple[StandinOpenAI, str]]:
    """One stand-in server per module; each test resets its script."""
    server = StandinOpenAI(models=[MODEL, "other-model"], api_key=KEY)
    with serve_asgi(server.app()) as url:
        yield server, url + "/v1"


@pytest.fixture
def server(standin: tuple[StandinOpenAI, str]) -> StandinOpenAI:
    srv = standin[0]
    srv.script = Script()
    srv.api_key = KEY
    srv.models = [MODEL, "other-model"]
    srv.records.clear()
    return srv


@pytest.fixture
def base_url(standin: tuple[StandinOpenAI, str]) -> str:
    return standin[1]


@pytest.fixture
def backend(server: StandinOpenAI, base_url: str) -> Iterator[OpenAITextBackend]:
    b = OpenAITextBackend(base_url, api_key=KEY, timeout_s=2)
    b.load(lambda phase: None)
    yield b
    b.unload()


def collect(stream: OpenAITextStream) -> tuple[str, str]:
    """Iterate a stream to its end; return (reasoning, answer)."""
    with stream:
        chunks = list(stream)
    assert all(isinstance(c, Chunk) and c.text for c in chunks)
    return ("".join(c.text for c in chunks if c.kind == "reasoning"),
            "".join(c.text for c in chunks if c.kind == "answer"))


def reply(backend: OpenAITextBackend, options: TextOptions | None = None,
          messages: list[dict[str, str]] | None = None) -> tuple[OpenAITextStream, str, str]:
    stream = backend.stream(messages or HELLO, options or TextOptions(), threading.Event())
    reasoning, answer = collect(stream)
    return stream, reasoning, answer


# --- registry and load ------------------------------------------------------------------------------------------


def test_the_backend_is_registered_and_built_from_settings(base_url: str) -> None:
    assert "openai" in text_backend_names()
    backend = create_text_backend("openai", base_url=base_url + "/", api_key=KEY, model=MODEL)
    assert isinstance(backend, OpenAITextBackend)
    assert backend.base_url == base_url
    assert backend.model_name == MODEL


def test_settings_choose_the_backend_and_its_concurrency(base_url: str, tmp_path: Path) -> None:
    from services.container import build_services
    from settings import Settings

    remote = Settings(profile="tiny", data_dir=tmp_path / "d", warmup=False, text_backend="openai",
                      openai_base_url=base_url, openai_api_key=KEY, openai_model=MODEL)
    assert remote.resolved_text_concurrency == 4
    assert remote.model_copy(update={"text_concurrency": 16}).resolved_text_concurrency == 16
    assert Settings(profile="tiny").resolved_text_concurrency == 1
    assert KEY not in repr(remote)  # secrets stay out of logs
    services = build_services(remote)
    backend = services.text_slot.backend
    assert isinstance(backend, OpenAITextBackend)
    assert (backend.base_url, backend.model_name) == (base_url, MODEL)
    assert not (remote.models_dir / "tiny-r1-gptq").exists()  # a remote backend builds no local model


def test_load_takes_the_first_served_model_when_none_is_set(backend: OpenAITextBackend, base_url: str) -> None:
    assert backend.model_name == MODEL
    info = backend.describe()
    assert info["url"] == base_url
    assert info["model"] == MODEL
    assert info["served_models"] == [MODEL, "other-model"]
    assert any("thinking_budget" in note for note in info["notes"])
    backend.offload()  # nothing to free: the server owns the model
    assert backend.model_name == MODEL


def test_load_checks_the_configured_model(server: StandinOpenAI, base_url: str) -> None:
    chosen = OpenAITextBackend(base_url, api_key=KEY, model="other-model")
    chosen.load(lambda p: None)
    assert chosen.model_name == "other-model"
    with pytest.raises(ModelUnavailable, match=r"does not serve 'missing'.*deepseek-r1-standin, other-model"):
        OpenAITextBackend(base_url, api_key=KEY, model="missing").load(lambda p: None)


@pytest.mark.parametrize("key", [None, "sk-wrong"])
def test_load_with_a_wrong_api_key_says_so(server: StandinOpenAI, base_url: str, key: str | None) -> None:
    with pytest.raises(ModelUnavailable, match=r"refused the API key \(401\).*ATELIER_OPENAI_API_KEY"):
        OpenAITextBackend(base_url, api_key=key).load(lambda p: None)


def test_load_against_a_server_that_is_down_says_how_to_start_one() -> None:
    backend = OpenAITextBackend(f"http://127.0.0.1:{free_port()}/v1", timeout_s=2)
    with pytest.raises(ModelUnavailable, match=r"Cannot reach.*vllm serve.*llama-server"):
        backend.load(lambda p: None)


def test_load_against_a_slow_server_times_out_clearly(server: StandinOpenAI, base_url: str) -> None:
    server.script.models_delay_s = 1.0
    with pytest.raises(ModelUnavailable, match=r"did not answer within 0.3 s"):
        OpenAITextBackend(base_url, api_key=KEY, timeout_s=0.3).load(lambda p: None)


def test_load_with_a_base_url_missing_v1_says_so(server: StandinOpenAI, base_url: str) -> None:
    with pytest.raises(ModelUnavailable, match="ends with /v1"):
        OpenAITextBackend(base_url.removesuffix("/v1"), api_key=KEY).load(lambda p: None)


def test_load_against_a_failing_server_reports_its_error(server: StandinOpenAI, base_url: str) -> None:
    server.script.models_status = 500
    with pytest.raises(ModelUnavailable, match=r"internal error \(500\).*models unavailable"):
        OpenAITextBackend(base_url, api_key=KEY).load(lambda p: None)


# --- the request ------------------------------------------------------------------------------------------------


def test_the_request_streams_with_the_options_and_without_earlier_reasoning(backend: OpenAITextBackend,
                                                                           server: StandinOpenAI) -> None:
    history = [{"role": "user", "content": "one"},
               {"role": "assistant", "content": "<think>\nsecret thoughts\n</think>\n\nfirst answer"},
               {"role": "user", "content": "two"}]
    reply(backend, TextOptions(temperature=0.3, top_p=0.8, max_new_tokens=77, seed=5), history)
    record = server.records[-1]
    body = record.body
    assert body["model"] == MODEL
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["seed"]) == (0.3, 0.8, 77, 5)
    assert body["messages"] == [{"role": "user", "content": "one"},
                                {"role": "assistant", "content": "first answer"},
                                {"role": "user", "content": "two"}]
    assert record.headers["authorization"] == f"Bearer {KEY}"
    assert "thinking_token_budget" not in body


def test_a_thinking_budget_is_sent_in_the_fields_servers_know(backend: OpenAITextBackend,
                                                             server: StandinOpenAI) -> None:
    reply(backend, TextOptions(thinking_budget=64))
    body = server.records[-1].body
    assert body["thinking_token_budget"] == 64  # vLLM
    assert body["thinking_budget_tokens"] == 64  # llama.cpp's llama-server


# --- streaming and reasoning ------------------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["reasoning_content", "reasoning", "think", "open"])
def test_reasoning_is_split_from_the_answer_in_every_style(backend: OpenAITextBackend, server: StandinOpenAI,
                                                           style: str) -> None:
    server.script = Script(style=style, reasoning="Two and two make four.", answer="It is 4.")  # type: ignore[arg-type]
    stream, reasoning, answer = reply(backend)
    assert reasoning.strip() == "Two and two make four."
    assert answer == "It is 4."
    assert stream.usage.finish_reason == "stop"


def test_a_separated_answer_keeps_tags_as_text(backend: OpenAITextBackend, server: StandinOpenAI) -> None:
    # When the server parses the reasoning out, the content is answer whatever it contains.
    server.script = Script(style="reasoning_content", reasoning="hmm", answer="Use the <think> tag.")
    _, reasoning, answer = reply(backend)
    assert (reasoning, answer) == ("hmm", "Use the <think> tag.")


def test_usage_comes_from_the_server_when_it_sends_it(backend: OpenAITextBackend, server: StandinOpenAI) -> None:
    server.script = Script(reasoning="a b c", answer="d e")
    stream, _, _ = reply(backend)
    assert stream.usage_is_exact
    assert (stream.usage.prompt_tokens, stream.usage.completion_tokens, stream.usage.reasoning_tokens) == (11, 6, 3)


def test_usage_is_counted_approximately_without_include_usage(server: StandinOpenAI, base_url: str) -> None:
    backend = OpenAITextBackend(base_url, api_key=KEY, include_usage=False)
    backend.load(lambda p: None)
    server.script = Script(style="think", reasoning="a b c", answer="d e")
    stream, reasoning, answer = reply(backend)
    assert "stream_options" not in server.records[-1].body
    assert not stream.usage_is_exact
    assert (reasoning.strip(), answer) == ("a b c", "d e")
    assert stream.usage.completion_tokens == server.records[-1].tokens_sent
    assert 3 <= stream.usage.reasoning_tokens < stream.usage.completion_tokens
    assert stream.usage.prompt_tokens >= 1


def test_max_tokens_ends_the_reply_with_length(backend: OpenAITextBackend, server: StandinOpenAI) -> None:
    server.script = Script(reasoning="one two three four five six", answer="never")
    stream, reasoning, answer = reply(backend, TextOptions(max_new_tokens=3))
    assert stream.usage.finish_reason == "length"
    assert reasoning == "one two three "
    assert answer == ""


def test_replies_stream_concurrently(backend: OpenAITextBackend, server: StandinOpenAI) -> None:
    server.script = Script(token_delay_s=0.02)
    results: list[tuple[str, str]] = []
    threads = [threading.Thread(target=lambda: results.append(reply(backend)[1:])) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == [(Script().reasoning, Script().answer)] * 4


# --- Stop -------------------------------------------------------------------------------------------------------


def test_stop_closes_the_stream_and_keeps_the_partial_reply(backend: OpenAITextBackend,
                                                           server: StandinOpenAI) -> None:
    server.script = Script(reasoning=" ".join(f"w{i}" for i in range(400)), token_delay_s=0.01)
    stop = threading.Event()
    stream = backend.stream(HELLO, TextOptions(), stop)
    seen: list[Chunk] = []
    for chunk in stream:
        seen.append(chunk)
        if len(seen) == 3:
            stop.set()
    stream.close()
    assert stream.usage.finish_reason == "cancelled"
    assert "".join(c.text for c in seen).startswith("w0 w1 w2")
    record = server.records[-1]
    assert wait_for(lambda: record.disconnected)  # the server saw the client go and stopped generating
    assert not record.finished
    assert record.tokens_sent < 400


def test_stop_while_waiting_for_a_slow_token_ends_the_reply(backend: OpenAITextBackend,
                                                           server: StandinOpenAI) -> None:
    # The next token would take longer than the read timeout; the Stop must not wait for it.
    server.script = Script(token_delay_s=1.5)
    stop = threading.Event()
    stream = backend.stream(HELLO, TextOptions(), stop)
    threading.Timer(0.2, stop.set).start()
    assert list(stream) == []
    assert stream.usage.finish_reason == "cancelled"
    assert wait_for(lambda: server.records[-1].disconnected)


def test_stop_while_waiting_for_the_response_headers_ends_the_reply(backend: OpenAITextBackend,
                                                                    server: StandinOpenAI) -> None:
    server.script = Script(first_byte_delay_s=1.5)  # a server that queues the request before answering
    stop = threading.Event()
    stream = backend.stream(HELLO, TextOptions(), stop)
    threading.Timer(0.2, stop.set).start()
    assert list(stream) == []
    assert stream.usage.finish_reason == "cancelled"


def test_stop_before_the_first_token_sends_nothing(backend: OpenAITextBackend, server: StandinOpenAI) -> None:
    stop = threading.Event()
    stop.set()
    stream = backend.stream(HELLO, TextOptions(), stop)
    assert list(stream) == []
    assert stream.usage.finish_reason == "cancelled"
    assert server.records == []


def test_closing_the_stream_mid_way_aborts_the_generation(backend: OpenAITextBackend,
                                                         server: StandinOpenAI) -> None:
    server.script = Script(reasoning=" ".join(f"w{i}" for i in range(400)), token_delay_s=0.01)
    stream = backend.stream(HELLO, TextOptions(), threading.Event())
    next(stream)
    stream.close()
    stream.close()  # twice is fine
    assert stream.usage.finish_reason == "cancelled"
    assert wait_for(lambda: server.records[-1].disconnected)


def test_a_stream_never_started_can_be_closed(backend: OpenAITextBackend, server: StandinOpenAI) -> None:
    stream = backend.stream(HELLO, TextOptions(), threading.Event())
    stream.close()
    assert stream.usage.finish_reason == "cancelled"
    assert server.records == []


# --- failures during a reply ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        (Script(fail="status", fail_status=429), r"rate-limiting or full \(429\).*Rate limit reached"),
        (Script(fail="status", fail_status=500), r"internal error \(500\).*The server had an error"),
        (Script(fail="malformed"), r"malformed stream \(not JSON"),
        (Script(fail="bad_shape"), r"malformed stream event"),
        (Script(fail="error_event"), r"failed during the reply: CUDA out of memory"),
        (Script(fail="drop"), r"ended before the reply was complete"),
        (Script(token_delay_s=1.0), r"sent nothing for 0.3 s"),
        (Script(first_byte_delay_s=1.0), r"sent nothing for 0.3 s"),
    ],
    ids=["429", "500", "malformed", "bad-shape", "error-event", "dropped", "slow-token", "slow-start"],
)
def test_failures_during_a_reply_become_clear_errors(server: StandinOpenAI, base_url: str, script: Script,
                                                    expected: str) -> None:
    backend = OpenAITextBackend(base_url, api_key=KEY, timeout_s=0.3)
    backend.load(lambda p: None)
    server.script = script
    stream = backend.stream(HELLO, TextOptions(), threading.Event())
    with pytest.raises(RemoteTextError, match=expected) as caught:
        collect(stream)
    assert isinstance(caught.value, RuntimeError)


def test_a_revoked_api_key_is_reported(backend: OpenAITextBackend, server: StandinOpenAI) -> None:
    server.api_key = "sk-rotated"
    with pytest.raises(RemoteTextError, match=r"refused the API key \(401\)"):
        reply(backend)


def test_a_model_the_server_no_longer_serves_is_reported(backend: OpenAITextBackend, server: StandinOpenAI) -> None:
    server.models = ["a-new-model"]
    with pytest.raises(RemoteTextError, match=r"does not serve the model 'deepseek-r1-standin' \(404\)"):
        reply(backend)


def test_a_server_that_went_away_is_reported(server: StandinOpenAI, base_url: str) -> None:
    backend = OpenAITextBackend(f"http://127.0.0.1:{free_port()}/v1", model=MODEL, timeout_s=2)
    backend.model = MODEL  # as if loaded before the server stopped
    with pytest.raises(RemoteTextError, match="cannot reach the text server"):
        reply(backend)


def test_stream_before_load_is_refused(base_url: str) -> None:
    with pytest.raises(RuntimeError, match="call load"):
        OpenAITextBackend(base_url).stream(HELLO, TextOptions(), threading.Event())


# --- through the chat service -----------------------------------------------------------------------------------


def test_the_chat_service_stores_remote_replies_and_failures(server: StandinOpenAI, base_url: str,
                                                            tmp_path: Path) -> None:
    from contracts import TextLimits
    from services.chat import ChatService
    from services.model_slots import ModelSlot
    from storage.db import open_database

    open_database(tmp_path / "chat.db")
    backend = OpenAITextBackend(base_url, api_key=KEY, timeout_s=2)
    slot = ModelSlot("text", backend, lambda b, report: b.load(report), model=MODEL, backend_name="openai")
    chat = ChatService(slot, TextLimits(), TextOptions())
    done = chat.start(chat.validate("Say hello.")).wait_finished(30)
    assert done.status == "done", done.message
    assert (done.reasoning, done.answer) == (Script().reasoning, Script().answer)
    message = chat.get_conversation(done.conversation_id)["messages"][1]
    assert (message["model"], message["completion_tokens"], message["finish_reason"]) == (MODEL, 14, "stop")

    server.script = Script(fail="status", fail_status=500)
    failed = chat.start(chat.validate("Again.", done.conversation_id)).wait_finished(30)
    assert failed.status == "failed"
    assert "internal error (500)" in failed.error
    assert chat.get_conversation(done.conversation_id)["messages"][-1]["status"] == "failed"


# --- real llama.cpp servers -------------------------------------------------------------------------------------


def _check_real_server(base_url: str) -> TextUsage:
    """What every real server must do for Atelier: list the model, stream a reply, stop one mid-way."""
    from tests.standins.llama_cpp import MODEL_ALIAS

    backend = OpenAITextBackend(base_url, timeout_s=30)
    backend.load(lambda p: None)
    assert MODEL_ALIAS in backend.model_name
    stream = backend.stream(HELLO, TextOptions(max_new_tokens=12, seed=1), threading.Event())
    reasoning, answer = collect(stream)
    assert reasoning or answer  # random weights: gibberish, but it arrives and is split
    assert stream.usage.finish_reason in ("length", "stop")
    assert 1 <= stream.usage.completion_tokens <= 12
    assert stream.usage.prompt_tokens >= 1

    stop = threading.Event()
    long = backend.stream(HELLO, TextOptions(max_new_tokens=400, seed=2), stop)
    for index, _chunk in enumerate(long):
        if index == 1:
            stop.set()
    long.close()
    assert long.usage.finish_reason == "cancelled"
    # The server is free again at once (it dropped the stopped reply): the next one completes.
    again = backend.stream(HELLO, TextOptions(max_new_tokens=4, seed=3), threading.Event())
    collect(again)
    assert again.usage.finish_reason in ("length", "stop")
    backend.unload()
    return stream.usage


# Module-scoped skip fixtures come first, so a missing server skips before the tiny model is built.
def test_against_llama_cpp_python_server(llama_cpp_python_ready: None, tiny_gguf: Path, tmp_path: Path) -> None:
    from tests.standins.llama_cpp import llama_cpp_python_server

    with llama_cpp_python_server(tiny_gguf, tmp_path / "llama-cpp-python.log") as base_url:
        _check_real_server(base_url)


def test_against_llama_server(llama_server_ready: str, tiny_gguf: Path, tmp_path: Path) -> None:
    from tests.standins.llama_cpp import llama_server

    with llama_server(llama_server_ready, tiny_gguf, tmp_path / "llama-server.log") as base_url:
        usage = _check_real_server(base_url)
        # --reasoning-format deepseek sends reasoning_content; thinking_budget_tokens forces </think>, so the
        # tiny model, which never closes its reasoning by itself, answers after three reasoning tokens.
        backend = OpenAITextBackend(base_url, timeout_s=30)
        backend.load(lambda p: None)
        budgeted = backend.stream(HELLO, TextOptions(max_new_tokens=12, seed=1, thinking_budget=3), threading.Event())
        reasoning, answer = collect(budgeted)
    assert usage.prompt_tokens > 1  # llama-server reports usage (stream_options.include_usage)
    assert budgeted.usage_is_exact
    assert reasoning
    assert answer
