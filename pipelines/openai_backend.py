"""The remote text backend: any OpenAI-compatible chat-completions server (vLLM, llama.cpp, SGLang, Ollama).

One reply is one streamed ``POST {base_url}/chat/completions``: Server-Sent Events whose ``data:`` lines carry
JSON deltas and end with ``data: [DONE]``. The reasoning comes either in a separate delta field (vLLM's and
llama.cpp's reasoning parsers: ``reasoning`` or ``reasoning_content``) or inside ``<think>`` tags in the
content, which the shared ReasoningSplitter takes apart. Stop shuts the connection down: that is how these
servers learn that a client has gone, and they abort the generation. No weights are loaded here.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from contracts import TextOptions
from pipelines.loading import ModelUnavailable
from pipelines.reasoning import Chunk, ReasoningSplitter
from pipelines.remote_http import RemoteBackend, RemoteHTTP, error_detail, explain_status
from pipelines.text_base import ChunkStream, FinishReason, TextUsage, history_for_model, register_text_backend

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
# How often the stop watcher looks at the stop event; a Stop takes effect within this long.
STOP_POLL_S = 0.05
# Without a usage report, one streamed delta is about one token (vLLM and llama.cpp send one per token), and
# a prompt is about four characters a token: good enough for the history page, labelled approximate.
CHARS_PER_TOKEN = 4
# Request fields that carry a thinking budget: vLLM's (with a reasoning config) and llama.cpp's llama-server.
BUDGET_FIELDS = ("thinking_token_budget", "thinking_budget_tokens")
_FINISH: dict[str, FinishReason] = {"stop": "stop", "length": "length", "abort": "cancelled", "cancelled": "cancelled"}
# How the server's HTTP error statuses are worded (see remote_http.explain_status).
_REFUSED_KEY = ("{where} refused the API key ({status}){said}; set ATELIER_OPENAI_API_KEY to the key it was started "
                "with (vLLM and llama-server: --api-key).")
STATUS_WORDS: dict[int | str, str] = {
    401: _REFUSED_KEY,
    403: _REFUSED_KEY,
    404: "{where} does not serve the model {model!r} (404){said}; set ATELIER_OPENAI_MODEL to a name listed at "
         "{url}/models, or leave it empty to use the first one.",
    429: "{where} is rate-limiting or full (429){said}; try again in a moment, or lower ATELIER_TEXT_CONCURRENCY.",
    "5xx": "{where} failed with an internal error ({status}){said}; see the server's log.",
    "other": "{where} rejected the request ({status}){said}.",
}


class RemoteTextError(RuntimeError):
    """A remote text server failed during a reply; the message says what went wrong and how to fix it."""


class _Reply:
    """The state of one reply, shared by the chunk generator and the stop watcher (never the stream object,
    so that dropping the stream frees it and its generator's cleanup closes the connection)."""

    def __init__(self, backend: OpenAITextBackend, body: dict[str, Any], stop: threading.Event,
                 prompt_chars: int) -> None:
        self.backend = backend
        self.body = body
        self.stop = stop
        self.usage = TextUsage(prompt_tokens=max(1, prompt_chars // CHARS_PER_TOKEN))
        self.usage_reported = False  # True once the server sent real token counts
        self.server_finish: str | None = None
        self.cancelled = False
        self.finished = False
        self.done = threading.Event()  # the reply is over: the watcher can go
        self.response: httpx.Response | None = None
        self.sock: socket.socket | None = None  # this reply's connection, known from the moment it connects
        self.lock = threading.Lock()
        # "tagged": reasoning inside <think> in the content; "separated": in its own delta field.
        self.mode: str | None = None
        self.splitter = ReasoningSplitter(starts_in_reasoning=backend.starts_in_reasoning)
        self.reasoning_started = False
        self.answer_started = False

    # The stop watcher: a Stop must interrupt a read that may wait a long time for the next token.
    def watch(self) -> None:
        """Thread: wait for the stop event (or the end of the reply), then shut the connection down."""
        while not self.done.is_set():
            if self.stop.wait(STOP_POLL_S):
                self.cancelled = True
                self.abort()
                return

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's trace hook: keep the socket as soon as the connection exists, before any header arrives."""
        if event != "connection.connect_tcp.complete":
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if isinstance(sock, socket.socket):
            with self.lock:
                self.sock = sock
            if self.stop.is_set():  # a Stop that came while connecting
                self.abort()

    def abort(self) -> None:
        """Shut the socket down so a blocked read returns at once and the server sees the client go."""
        with self.lock:
            sock = self.sock
        if sock is None:
            return  # not connected yet: trace() aborts the moment it connects
        try:
            # shutdown (not close) is safe while another thread reads: the read sees end-of-stream.
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            log.debug("socket already closed", exc_info=True)

    def chunks(self) -> Iterator[Chunk]:
        """Reasoning/answer chunks as the server streams them; the finally block always closes the connection."""
        if self.stop.is_set():
            self.cancelled = True  # stopped before it began: no request is sent at all
            self.finish()
            return
        watcher = threading.Thread(target=self.watch, name="atelier-openai-stop", daemon=True)
        watcher.start()
        try:
            yield from self._stream()
            yield from self.splitter.finish()
        finally:
            self.done.set()
            with self.lock:
                response, self.response = self.response, None
            if response is not None:
                response.close()
            watcher.join()
            self.finish()

    def _stream(self) -> Iterator[Chunk]:
        """Send the request and turn its events into chunks; HTTP failures become RemoteTextError."""
        backend = self.backend
        try:
            client = backend.client()
            request = client.build_request("POST", "chat/completions", json=self.body,
                                           extensions={"trace": self.trace})
            response = client.send(request, stream=True)
            with self.lock:
                self.response = response
            try:
                yield from self._read(response)
            finally:
                response.close()
        except (httpx.ConnectError, httpx.ConnectTimeout) as err:
            if self._stopped():
                return
            raise RemoteTextError(backend.http.unreachable(err)) from err
        except httpx.TimeoutException as err:
            if self._stopped():
                return
            raise RemoteTextError(
                f"the server at {backend.base_url} sent nothing for {backend.timeout_s:g} s "
                f"({type(err).__name__}); it may be overloaded: raise ATELIER_REMOTE_TIMEOUT_S or check its log."
            ) from err
        except (httpx.HTTPError, OSError) as err:
            if self._stopped():
                return  # the stop watcher shut the connection down: the partial reply is kept
            raise RemoteTextError(
                f"the connection to {backend.base_url} broke during the reply ({type(err).__name__}: {err})."
            ) from err

    def _read(self, response: httpx.Response) -> Iterator[Chunk]:
        """The SSE body: ``data:`` lines up to ``data: [DONE]``."""
        backend = self.backend
        if self._stopped():  # a Stop while the request was being sent
            return
        if response.status_code != 200:
            raise RemoteTextError(backend.explain_status(response))
        saw_done = False
        for line in response.iter_lines():
            if self._stopped():
                return  # lines already received after a Stop are dropped: the reply ends here
            if not line.startswith("data:"):
                continue  # SSE comments (": ping"), event names, ids and blank separators
            data = line[5:].strip()
            if data == "[DONE]":
                saw_done = True
                break
            yield from self._event(data)
        if not saw_done and self.server_finish is None and not self._stopped():
            raise RemoteTextError(
                f"the stream from {backend.base_url} ended before the reply was complete "
                "(no finish_reason and no [DONE]); the server may have crashed: see its log."
            )

    def _stopped(self) -> bool:
        if self.stop.is_set():
            self.cancelled = True
        return self.cancelled

    def _event(self, data: str) -> Iterator[Chunk]:
        """Turn one SSE data payload into chunks, updating usage and the finish reason."""
        try:
            event = json.loads(data)
        except ValueError as err:
            raise RemoteTextError(
                f"the server at {self.backend.base_url} sent a malformed stream (not JSON: {data[:80]!r})."
            ) from err
        if not isinstance(event, dict):
            raise self._malformed(data)
        if "error" in event:  # vLLM and others report a failure mid-stream as an event
            error = event["error"]
            message = error.get("message", error) if isinstance(error, dict) else error
            raise RemoteTextError(f"the server at {self.backend.base_url} failed during the reply: {message}")
        usage = event.get("usage")
        if isinstance(usage, dict):
            self._take_usage(usage)
        choices = event.get("choices")
        if choices is None:
            if isinstance(usage, dict):
                return  # the include_usage chunk: usage only, empty choices
            raise self._malformed(data)
        if not isinstance(choices, list):
            raise self._malformed(data)
        for choice in choices:
            delta = (choice.get("delta") or {}) if isinstance(choice, dict) else None
            if not isinstance(delta, dict):
                raise self._malformed(data)
            yield from self._delta(delta)
            if choice.get("finish_reason"):
                self.server_finish = str(choice["finish_reason"])

    def _malformed(self, data: str) -> RemoteTextError:
        return RemoteTextError(f"the server at {self.backend.base_url} sent a malformed stream event: {data[:80]!r}")

    def _delta(self, delta: dict[str, Any]) -> Iterator[Chunk]:
        reasoning = delta.get("reasoning_content") or delta.get("reasoning") or ""
        content = delta.get("content") or ""
        if not isinstance(reasoning, str) or not isinstance(content, str):
            raise RemoteTextError(f"the server at {self.backend.base_url} sent a malformed delta: {delta!r:.80}")
        if reasoning:
            if self.mode is None:
                self.mode = "separated"
            if not self.usage_reported:
                self.usage.reasoning_tokens += 1
            if self.mode == "tagged":
                # Content came first, so it went to the splitter; take the separated reasoning from here on.
                yield from self.splitter.finish()
                self.mode = "separated"
            yield from self._emit("reasoning", reasoning)
        if content:
            if self.mode is None:
                self.mode = "tagged"
            if self.mode == "separated":
                # The server parsed the reasoning out: content is answer, whatever it looks like.
                yield from self._emit("answer", content)
            else:
                before = len(self.splitter.reasoning)
                yield from self.splitter.feed(content)
                if not self.usage_reported and len(self.splitter.reasoning) > before:
                    self.usage.reasoning_tokens += 1
        if (reasoning or content) and not self.usage_reported:
            self.usage.completion_tokens += 1

    def _emit(self, kind: str, text: str) -> Iterator[Chunk]:
        # Like the splitter: leading whitespace of each part is never shown (R1 puts "\n\n" after </think>).
        started = self.reasoning_started if kind == "reasoning" else self.answer_started
        if not started:
            text = text.lstrip()
            if not text:
                return
            if kind == "reasoning":
                self.reasoning_started = True
            else:
                self.answer_started = True
        yield Chunk("reasoning" if kind == "reasoning" else "answer", text)

    def _take_usage(self, usage: dict[str, Any]) -> None:
        try:
            prompt = int(usage.get("prompt_tokens") or 0)
            completion = int(usage.get("completion_tokens") or 0)
            details = usage.get("completion_tokens_details") or {}
            reasoning = int(details.get("reasoning_tokens") or 0) if isinstance(details, dict) else 0
        except (TypeError, ValueError):
            return  # a usage block we cannot read: keep the approximate counts
        if prompt or completion:
            self.usage.prompt_tokens = prompt
            self.usage.completion_tokens = completion
            if reasoning:
                self.usage.reasoning_tokens = reasoning
            self.usage_reported = True

    def finish(self) -> None:
        """Settle the usage report once, however the reply ended."""
        if self.finished:
            return
        self.finished = True
        self.done.set()
        if self.cancelled or self.stop.is_set():
            self.usage.finish_reason = "cancelled"
        elif self.server_finish is not None:
            self.usage.finish_reason = _FINISH.get(self.server_finish, "stop")
        elif self.usage.completion_tokens >= int(self.body.get("max_tokens") or 0) > 0:
            self.usage.finish_reason = "length"
        else:
            self.usage.finish_reason = "stop"


class OpenAITextStream(ChunkStream):
    """One reply from the server: iterate it for reasoning/answer chunks; ``usage`` is final at the end.

    The request is sent with the first next(). Setting the stop event ends the iteration normally with
    finish_reason "cancelled" and the partial text kept; close(), leaving a ``with`` block or dropping the
    stream closes the connection too, which makes the server abort the generation.
    """

    def __init__(self, reply: _Reply) -> None:
        self._reply = reply
        super().__init__(reply.usage, reply.chunks())

    @property
    def usage_is_exact(self) -> bool:
        """Whether the token counts came from the server (else they are approximate)."""
        return self._reply.usage_reported

    def close(self) -> None:
        """Close the connection (the server aborts the generation); safe to call more than once."""
        reply = self._reply
        if not reply.finished:
            # Closed before the server finished: the reply is cut short, as with a Stop.
            reply.cancelled = True
        super().close()
        # A generator closed before its first next() never ran, so its finally block did not either.
        reply.finish()


@register_text_backend("openai")
class OpenAITextBackend(RemoteBackend):
    """DeepSeek-R1 (or any chat model) served by an OpenAI-compatible server; nothing is loaded here."""

    name = "openai"
    revision = ""  # an OpenAI-compatible server names its model but not which files it serves

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str | None = None,
        model: str | None = None,
        timeout_s: float = 60.0,
        include_usage: bool = True,
        starts_in_reasoning: bool = True,
        max_connections: int = 16,
    ) -> None:
        headers = {"Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        # A fresh connection per reply: Stop shuts that reply's socket down, and a pooled connection would be
        # connected before the trace hook could see it. Each timeout (connect, read, ...) applies on its own: a
        # read waits at most timeout_s for the next token.
        self.http = RemoteHTTP(base_url, "the text server", timeout_s, headers=headers,
                               limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=0))
        self._configured_model = model or None
        self.model = model or ""
        self.timeout_s = timeout_s
        self.include_usage = include_usage
        # R1's chat template opens the reasoning in the prompt, so tagged content starts inside it.
        self.starts_in_reasoning = starts_in_reasoning
        self.max_connections = max_connections
        self.revision = ""  # the served model's id and creation time, when the server tells them
        self.served_models: list[str] = []
        self.notes: list[str] = []

    @property
    def base_url(self) -> str:
        """The server's OpenAI API root (ending in /v1 as a rule), without a trailing slash."""
        return self.http.url

    @property
    def model_name(self) -> str:
        """The served model's name, as shown in the UI and stored in history."""
        return self.model or self._configured_model or f"model at {self.base_url}"

    def explain_status(self, response: httpx.Response) -> str:
        """A clear message for an HTTP error status from the server, with its own words on the error."""
        return explain_status(STATUS_WORDS, response.status_code, error_detail(response), where=self.http.where,
                              model=self.model_name, url=self.base_url)

    # 1. Load --------------------------------------------------------------------------------------
    def load(self, report: Callable[[str], None]) -> None:
        """Check that the server answers and serves the model (from settings, else its first model)."""
        report(f"connecting to the text server at {self.base_url}")
        response = self.http.check(
            "models", still="loading its model",
            how_to_start="Start it (for example `vllm serve MODEL --reasoning-parser deepseek_r1` or `llama-server -m "
                         "model.gguf --reasoning-format deepseek --jinja`), or point ATELIER_OPENAI_BASE_URL at it "
                         "(with /v1).")
        if response.status_code == 404 and self._configured_model:
            # A server without a model list (some proxies): trust the configured name; a wrong one fails later.
            self.notes.append("the server has no /models list: the configured model name was not checked")
            self.model = self._configured_model
            return
        if response.status_code == 404:
            raise ModelUnavailable(
                f"The text server at {self.base_url} has no {self.base_url}/models (404): check that "
                "ATELIER_OPENAI_BASE_URL ends with /v1, or set ATELIER_OPENAI_MODEL."
            )
        if response.status_code != 200:
            raise ModelUnavailable(self.explain_status(response))
        try:
            entries = response.json().get("data") or []
            models = {str(m["id"]): m for m in entries}
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            raise ModelUnavailable(
                f"The text server at {self.base_url} answered {self.base_url}/models with something that is not "
                f"an OpenAI model list ({type(err).__name__}); is ATELIER_OPENAI_BASE_URL right?"
            ) from err
        self.served_models = list(models)
        if self._configured_model:
            if self._configured_model not in models:
                raise ModelUnavailable(
                    f"The text server at {self.base_url} does not serve {self._configured_model!r}; it serves: "
                    f"{', '.join(models) or 'nothing'}. Set ATELIER_OPENAI_MODEL to one of them."
                )
            self.model = self._configured_model
        elif models:
            self.model = next(iter(models))
        else:
            raise ModelUnavailable(f"The text server at {self.base_url} serves no model yet; wait for it to load.")
        created = models[self.model].get("created") if isinstance(models[self.model], dict) else None
        self.revision = f"{self.model}@{created}" if created else self.model
        report(f"{self.model} is served at {self.base_url}")

    # 2. Stream ------------------------------------------------------------------------------------
    def request_body(self, messages: list[dict[str, str]], options: TextOptions) -> dict[str, Any]:
        """The chat-completions request for ``messages`` (earlier reasoning removed) and ``options``."""
        body: dict[str, Any] = {
            "model": self.model_name,
            "messages": history_for_model(messages),
            "stream": True,
            "temperature": options.temperature,
            "top_p": options.top_p,
            "max_tokens": options.max_new_tokens,
        }
        if self.include_usage:
            body["stream_options"] = {"include_usage": True}
        if options.seed is not None:
            body["seed"] = options.seed
        if options.thinking_budget is not None:
            # No standard field exists; servers ignore the names they do not know.
            body.update(dict.fromkeys(BUDGET_FIELDS, options.thinking_budget))
        return body

    def stream(
        self, messages: list[dict[str, str]], options: TextOptions, stop: threading.Event
    ) -> OpenAITextStream:
        """Start a reply; iterate the result for chunks. The request is sent with the first next()."""
        if not self.model:
            raise RuntimeError("the text server has not been checked yet: call load() first")
        body = self.request_body(messages, options)
        prompt_chars = sum(len(m["content"]) for m in body["messages"])
        return OpenAITextStream(_Reply(self, body, stop, prompt_chars))

    # 3. Memory (offload and unload: RemoteBackend) and health -------------------------------------
    def describe(self) -> dict[str, Any]:
        """Server, model and notes for the health page."""
        notes = [*self.notes,
                 "thinking_budget is sent as thinking_token_budget (vLLM) and thinking_budget_tokens (llama-server); "
                 "servers without such a field ignore it",
                 "token counts are the server's when it reports usage, else approximate"]
        return {"url": self.base_url, "model": self.model_name, "served_models": list(self.served_models),
                "notes": notes}
