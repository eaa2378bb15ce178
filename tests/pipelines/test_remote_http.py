"""What the remote backends share: their HTTP client, the server's words on an error, and the failure messages."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import httpx
import pytest

from pipelines.loading import ModelUnavailable
from pipelines.remote_http import (
    DETAIL_CHARS,
    RemoteBackend,
    RemoteHTTP,
    error_detail,
    error_text,
    explain_status,
)
from tests.server import free_port
from tests.standins.serving import serve_asgi

Handler = Callable[[httpx.Request], httpx.Response]


def answer(status: int, content: bytes = b"{}") -> Handler:
    return lambda request: httpx.Response(status, content=content)


def failing(error: type[httpx.TransportError], message: str = "boom") -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error(message, request=request)

    return handler


def remote(handler: Handler, url: str = "http://server.test:7861/", timeout_s: float = 0.5,
           **options: object) -> RemoteHTTP:
    return RemoteHTTP(url, "the test server", timeout_s, transport=httpx.MockTransport(handler), **options)


# --- error_detail ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"error": {"message": "model not found", "type": "NotFound"}}', "model not found"),  # OpenAI
        (b'{"object": "error", "message": "max_tokens is too large"}', "max_tokens is too large"),  # older vLLM
        (b'{"detail": "Not authenticated"}', "Not authenticated"),  # FastAPI
        (b'{"detail": [{"loc": ["body", "steps"], "msg": "bad"}]}', '[{"loc": ["body", "steps"], "msg": "bad"}]'),
        (b'{"error": {"code": 7}}', '{"code": 7}'),  # an error object without a message is quoted whole
        (b'{"error": "", "detail": "the second key"}', "the second key"),  # empty values are passed over
        (b'{"unknown": "shape"}', '{"unknown": "shape"}'),
        (b'["a", "list"]', '["a", "list"]'),
        (b'"just a string"', "just a string"),
        ('{"detail": "schön"}'.encode(), "schön"),
        (b"  Internal Server Error\n", "Internal Server Error"),  # not JSON: the text, trimmed
        (b"", ""),
        (b"null", ""),
    ],
)
def test_error_detail_finds_the_servers_own_words(body: bytes, expected: str) -> None:
    assert error_detail(httpx.Response(500, content=body)) == expected


def test_error_detail_follows_the_key_order_it_is_given() -> None:
    # A1111's api_error body: "error" is the exception's type, "errors" its text.
    body = b'{"error": "HTTPException", "detail": "Sampler not found", "body": "", "errors": "404: Sampler not found"}'
    assert error_detail(httpx.Response(404, content=body)) == "HTTPException"
    assert error_detail(httpx.Response(404, content=body), ("errors", "detail", "error")) == "404: Sampler not found"
    assert error_detail(httpx.Response(404, content=b'{"errors": "", "detail": "d"}'), ("errors", "detail")) == "d"


def test_error_detail_is_cut_to_a_readable_length() -> None:
    assert error_detail(httpx.Response(500, content=b"x" * 5000)) == "x" * DETAIL_CHARS
    long_detail = httpx.Response(500, json={"detail": "y" * 5000})
    assert error_detail(long_detail) == "y" * DETAIL_CHARS


def test_error_detail_reads_a_streamed_body_and_survives_one_that_breaks() -> None:
    class Chunks(httpx.SyncByteStream):
        def __init__(self, fail: bool) -> None:
            self.fail = fail

        def __iter__(self) -> Iterator[bytes]:
            yield b'{"error": {"message": '
            if self.fail:
                raise httpx.ReadError("connection reset")
            yield b'"overloaded"}}'

    assert error_detail(httpx.Response(503, stream=Chunks(fail=False))) == "overloaded"
    assert error_detail(httpx.Response(503, stream=Chunks(fail=True))) == ""


# --- explain_status -------------------------------------------------------------------------------------------------
WORDS: dict[int | str, str] = {
    401: "{where} refused the key ({status}){said}; set KEY.",
    404: "{where} has no {thing} (404){said}.",
    "5xx": "{where} failed ({status}){said}; see its log.",
    "other": "{where} answered {status}{said}.",
}


@pytest.mark.parametrize(
    ("status", "detail", "expected"),
    [
        (401, "bad key", "S refused the key (401) (server said: bad key); set KEY."),
        (401, "", "S refused the key (401); set KEY."),
        (404, "", "S has no model (404)."),
        (500, "CUDA out of memory", "S failed (500) (server said: CUDA out of memory); see its log."),
        (503, "", "S failed (503); see its log."),
        (429, "slow down", "S answered 429 (server said: slow down)."),
        (400, "{where} {status}", "S answered 400 (server said: {where} {status})."),  # the detail is not a template
    ],
)
def test_explain_status_picks_the_backends_words(status: int, detail: str, expected: str) -> None:
    assert explain_status(WORDS, status, detail, where="S", thing="model") == expected


# --- RemoteHTTP -----------------------------------------------------------------------------------------------------
def test_one_client_is_made_on_first_use_and_shared_by_threads() -> None:
    http = remote(answer(200))
    seen: list[httpx.Client] = []
    threads = [threading.Thread(target=lambda: seen.append(http.client())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 8
    assert all(client is seen[0] for client in seen)


def test_paths_join_under_the_url_and_client_options_pass_through() -> None:
    requests: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200)

    http = remote(record, url="http://server.test/v1/", headers={"Authorization": "Bearer k"})
    assert http.url == "http://server.test/v1"
    assert http.where == "the test server at http://server.test/v1"
    http.client().get("models")
    assert str(requests[0].url) == "http://server.test/v1/models"  # under /v1, not beside it
    assert requests[0].headers["authorization"] == "Bearer k"


def test_proxy_variables_of_the_environment_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    # Taken from the environment, this proxy would be asked instead of the server, and refuse.
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{free_port()}")
    app = Starlette(routes=[Route("/x", lambda request: PlainTextResponse("from the server"))])
    with serve_asgi(app) as url:
        http = RemoteHTTP(url, "the test server", 5.0)  # a real transport: a mock one never reads the environment
        assert http.client().get("x").text == "from the server"
        http.close()


def test_timeouts_connect_quickly_and_wait_as_long_as_asked() -> None:
    http = remote(answer(200), timeout_s=60)
    assert http.client().timeout == httpx.Timeout(60, connect=10)
    assert http.timeout(1800) == httpx.Timeout(1800, connect=10)  # a long job still learns of a dead server fast
    assert remote(answer(200), timeout_s=2).timeout(1800) == httpx.Timeout(1800, connect=2)


def test_close_drops_the_client_and_the_next_use_makes_a_new_one() -> None:
    http = remote(answer(200))
    http.close()  # nothing made yet: nothing to close
    first = http.client()
    http.close()
    assert first.is_closed
    second = http.client()
    assert second is not first
    assert second.get("x").status_code == 200


def test_check_returns_any_answer_for_the_backend_to_judge() -> None:
    assert remote(answer(200, b'{"ok": true}')).check("options", "starting", "Start it.").json() == {"ok": True}
    assert remote(answer(500)).check("options", "starting", "Start it.").status_code == 500


def test_check_says_a_slow_server_may_still_be_busy() -> None:
    with pytest.raises(ModelUnavailable) as caught:
        remote(failing(httpx.ReadTimeout)).check("models", "loading its model", "Start it.")
    assert str(caught.value) == (
        "The test server at http://server.test:7861 did not answer within 0.5 s (ReadTimeout). It may still be "
        "loading its model: wait and retry, or raise ATELIER_REMOTE_TIMEOUT_S."
    )
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)


def test_check_says_how_to_start_a_server_that_cannot_be_reached() -> None:
    with pytest.raises(ModelUnavailable) as caught:
        remote(failing(httpx.ConnectError, "[Errno 111] Connection refused")).check(
            "models", "starting", "Start it with `serve --api`.")
    assert str(caught.value) == ("Cannot reach the test server at http://server.test:7861 (ConnectError: [Errno 111] "
                                 "Connection refused). Start it with `serve --api`.")


def test_check_against_a_closed_port_is_a_clear_refusal() -> None:
    http = RemoteHTTP(f"http://127.0.0.1:{free_port()}", "the test server", 2.0)
    with pytest.raises(ModelUnavailable, match=r"^Cannot reach the test server at http://127\.0\.0\.1:\d+ \(Connect"):
        http.check("models", "starting", "Start it.")
    http.close()


def test_unreachable_names_the_server_and_the_error() -> None:
    http = remote(answer(200))
    err = httpx.ConnectError("[Errno -2] Name or service not known")
    assert error_text(err) == "ConnectError: [Errno -2] Name or service not known"
    assert http.unreachable(err) == ("cannot reach the test server at http://server.test:7861 "
                                     "(ConnectError: [Errno -2] Name or service not known); is it running?")


# --- RemoteBackend --------------------------------------------------------------------------------------------------
def test_a_remote_backend_frees_nothing_and_unload_closes_its_connections() -> None:
    class Backend(RemoteBackend):
        def __init__(self) -> None:
            self.http = remote(answer(200))
            self.model = "served-model"

    backend = Backend()
    assert backend.remote is True  # residency leaves its memory alone
    client = backend.client()
    assert client is backend.http.client()
    backend.offload()
    assert backend.model == "served-model"
    assert not client.is_closed
    backend.unload()
    assert backend.model == ""  # the next load() checks the server again
    assert client.is_closed
