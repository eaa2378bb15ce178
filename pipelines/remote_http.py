"""What the remote backends (AUTOMATIC1111, OpenAI-compatible) share about talking HTTP to their server.

One lazily made, thread-safe ``httpx.Client`` per backend, the server's own words out of an error response,
the messages for the failures both word alike (a server down or slow when checked, one that cannot be reached
during a job, an HTTP error status, whose wording each backend gives as templates), and the memory calls of
a backend whose model lives on the server.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

import httpx

from pipelines.loading import ModelUnavailable

# Connecting takes a few milliseconds when the server is up; waiting longer only delays the "cannot reach".
MAX_CONNECT_S = 10.0
# How much of the server's error text a message quotes: enough for a traceback's last line, never a page.
DETAIL_CHARS = 300
# Where error bodies keep their message: OpenAI's {"error": {"message"}}, FastAPI's {"detail"}, vLLM's older
# {"message"}. A1111's api_error body {error, detail, body, errors} names its own order.
DETAIL_KEYS = ("error", "detail", "message")


def error_text(err: BaseException) -> str:
    """An exception as 'ConnectError: [Errno 111] Connection refused', for messages that say what failed."""
    return f"{type(err).__name__}: {err}"


def error_detail(response: httpx.Response, keys: tuple[str, ...] = DETAIL_KEYS) -> str:
    """The server's own words from an error response: the first non-empty of ``keys`` in a JSON body, or its text.

    Reads the body if it was streamed; '' when there is none or it cannot be read.
    """
    try:
        raw = response.read()
    except httpx.HTTPError:
        return ""
    try:
        body: Any = json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", errors="replace").strip()[:DETAIL_CHARS]
    if isinstance(body, dict):
        for key in keys:
            value = body.get(key)
            if isinstance(value, dict) and value.get("message"):
                value = value["message"]  # OpenAI's error object: its message is the part a person reads
            if value:
                body = value
                break
    if body is None:
        return ""
    return (body if isinstance(body, str) else json.dumps(body, ensure_ascii=False))[:DETAIL_CHARS]


def explain_status(words: Mapping[int | str, str], status: int, detail: str, **fields: object) -> str:
    """A backend's message for an HTTP error status, from its templates.

    ``words`` maps a status, else "5xx" (500 and up), else "other", to a format string; each may use
    {status}, {said} (" (server said: DETAIL)" or "" without one) and the ``fields`` the backend passes.
    """
    template = words.get(status) or words["5xx" if status >= 500 else "other"]
    said = f" (server said: {detail})" if detail else ""
    return template.format(status=status, said=said, **fields)


class RemoteHTTP:
    """The HTTP client of one remote backend, made on first use and shared by its threads; close() drops it.

    ``server`` names it in messages ("the text server"); ``client_options`` (auth, headers, limits) go to
    ``httpx.Client`` as they are.
    """

    def __init__(self, url: str, server: str, timeout_s: float, **client_options: Any) -> None:
        self.url = url.rstrip("/")
        self.server = server
        self.timeout_s = timeout_s
        self._options = client_options
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        """The server as messages name it: 'the text server at http://…'."""
        return f"{self.server} at {self.url}"

    def timeout(self, read_s: float) -> httpx.Timeout:
        """Timeouts that wait ``read_s`` for data but connect as quickly as every other call."""
        return httpx.Timeout(read_s, connect=min(self.timeout_s, MAX_CONNECT_S))

    def client(self) -> httpx.Client:
        """The shared client (thread-safe: concurrent calls use separate pooled connections)."""
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(
                    base_url=self.url,  # httpx adds the "/" that makes "models" join under /v1
                    timeout=self.timeout(self.timeout_s),
                    # The server is named by settings, never found through proxy variables of the environment.
                    trust_env=False,
                    **self._options,
                )
            return self._client

    def close(self) -> None:
        """Close the client's connections; the next client() makes a new one."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def check(self, path: str, still: str, how_to_start: str) -> httpx.Response:
        """GET ``path`` for a backend's load(): ModelUnavailable saying whether the server is slow or down.

        ``still`` ends "It may still be …" (what a slow server may be busy with); ``how_to_start`` follows a
        server that cannot be reached.
        """
        where = self.where[:1].upper() + self.where[1:]
        try:
            return self.client().get(path)
        except httpx.TimeoutException as err:
            raise ModelUnavailable(
                f"{where} did not answer within {self.timeout_s:g} s ({type(err).__name__}). It may still be "
                f"{still}: wait and retry, or raise ATELIER_REMOTE_TIMEOUT_S."
            ) from err
        except httpx.HTTPError as err:
            raise ModelUnavailable(f"Cannot reach {self.where} ({error_text(err)}). {how_to_start}") from err

    def unreachable(self, err: BaseException) -> str:
        """The message for a job that could not reach the server (refused, reset, name unknown)."""
        return f"cannot reach {self.where} ({error_text(err)}); is it running?"


class RemoteBackend:
    """The part of a remote backend that is the same for both: its HTTP client, and memory it does not hold."""

    # A server owns the model: offload() and unload() free nothing here (for the health page and residency).
    remote = True
    http: RemoteHTTP
    model: str

    def client(self) -> httpx.Client:
        """The shared HTTP client (thread-safe: concurrent calls use separate connections)."""
        return self.http.client()

    def offload(self) -> None:
        """Nothing to free here: the server owns the model (a no-op)."""

    def unload(self) -> None:
        """Close the HTTP connections; the next load() checks the server again."""
        self.http.close()
        self.model = ""
