"""A stand-in OpenAI-compatible chat server, written from the published chat-completions API.

It speaks what vLLM, llama.cpp's llama-server, SGLang and Ollama speak: ``GET /v1/models`` and
``POST /v1/chat/completions`` with ``stream: true`` as Server-Sent Events (``data: {chat.completion.chunk}``
lines, a final chunk with ``finish_reason``, an optional usage chunk with empty ``choices`` when
``stream_options.include_usage`` is set, then ``data: [DONE]``). Errors use OpenAI's body,
``{"error": {"message", "type", "param", "code"}}``. What it says, and how it fails, is set per test through
``StandinOpenAI.script``; every request and every client disconnect is recorded.

Run it alone with ``python -m tests.standins.openai_server --port 8000`` to point Atelier at it by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

# How the reasoning reaches the client: a delta field (vLLM >= 0.10 "reasoning", llama-server and older vLLM
# "reasoning_content"), "<think>" tags in the content ("think"), R1's forced-open prompt where the content has
# only the closing tag ("open"), or no reasoning at all ("plain").
Style = Literal["reasoning_content", "reasoning", "think", "open", "plain"]
Failure = Literal["status", "malformed", "drop", "error_event", "bad_shape"]


@dataclass
class Script:
    """What the next replies say and how they fail."""

    reasoning: str = "The user greets me. I should greet back."
    answer: str = "Hello! How can I help?"
    style: Style = "reasoning_content"
    token_delay_s: float = 0.0
    first_byte_delay_s: float = 0.0  # before the response headers: a slow or stuck server
    fail: Failure | None = None
    fail_status: int = 500
    fail_after_tokens: int = 2  # for malformed / drop / error_event: how many tokens come first
    models_status: int = 200  # for GET /v1/models
    models_delay_s: float = 0.0


@dataclass
class Record:
    """One chat request as the server saw it."""

    body: dict[str, Any]
    headers: dict[str, str]
    tokens_sent: int = 0
    finished: bool = False
    disconnected: bool = False


def _tokens(text: str) -> list[str]:
    """Split text into token-like pieces (words with their following space), as servers stream them."""
    pieces: list[str] = []
    word = ""
    for char in text:
        word += char
        if char in " \n":
            pieces.append(word)
            word = ""
    if word:
        pieces.append(word)
    return pieces


def _error(status: int, message: str, type_: str, code: str | None = None, param: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_, "param": param, "code": code}},
                        status_code=status)


@dataclass
class StandinOpenAI:
    """The server's state: served models, the API key, the script, and what it has seen."""

    models: list[str] = field(default_factory=lambda: ["deepseek-r1-standin"])
    api_key: str | None = None
    script: Script = field(default_factory=Script)
    records: list[Record] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Starlette:
        """The ASGI app."""
        return Starlette(routes=[
            Route("/v1/models", self.list_models, methods=["GET"]),
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
        ])

    def _auth_error(self, request: Request) -> JSONResponse | None:
        if self.api_key is None:
            return None
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        return None

    async def list_models(self, request: Request) -> Response:
        """GET /v1/models: the OpenAI model list."""
        script = self.script
        if script.models_delay_s:
            await asyncio.sleep(script.models_delay_s)
        if (denied := self._auth_error(request)) is not None:
            return denied
        if script.models_status != 200:
            return _error(script.models_status, "models unavailable", "server_error")
        data = [{"id": m, "object": "model", "created": 1700000000, "owned_by": "standin"} for m in self.models]
        return JSONResponse({"object": "list", "data": data})

    async def chat(self, request: Request) -> Response:
        """POST /v1/chat/completions, streamed or not."""
        script = self.script
        if script.first_byte_delay_s:
            await asyncio.sleep(script.first_byte_delay_s)
        if (denied := self._auth_error(request)) is not None:
            return denied
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "We could not parse the JSON body of your request.", "invalid_request_error")
        record = Record(body=body, headers=dict(request.headers))
        with self._lock:
            self.records.append(record)
        problem = self._check(body)
        if problem is not None:
            return problem
        if script.fail == "status":
            messages = {401: "Incorrect API key provided.", 404: "The model does not exist.",
                        429: "Rate limit reached for requests.", 500: "The server had an error."}
            return _error(script.fail_status, messages.get(script.fail_status, "error"),
                          "server_error" if script.fail_status >= 500 else "invalid_request_error")
        if not body.get("stream"):
            return self._whole_reply(body)
        return _SSEResponse(self, record, script)

    def _check(self, body: dict[str, Any]) -> JSONResponse | None:
        """Validate like the real API: the model exists, messages are role/content pairs, numbers in range."""
        if body.get("model") not in self.models:
            return _error(404, f"The model `{body.get('model')}` does not exist.", "invalid_request_error",
                          "model_not_found", "model")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _error(400, "'messages' must be a non-empty array.", "invalid_request_error", param="messages")
        for message in messages:
            if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant") \
                    or not isinstance(message.get("content"), str):
                return _error(400, "Invalid message.", "invalid_request_error", param="messages")
        temperature, top_p = body.get("temperature", 1), body.get("top_p", 1)
        if not isinstance(temperature, int | float) or not 0 <= temperature <= 2:
            return _error(400, "temperature must be between 0 and 2", "invalid_request_error", param="temperature")
        if not isinstance(top_p, int | float) or not 0 < top_p <= 1:
            return _error(400, "top_p must be in (0, 1]", "invalid_request_error", param="top_p")
        max_tokens = body.get("max_tokens")
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            return _error(400, "max_tokens must be a positive integer", "invalid_request_error", param="max_tokens")
        return None

    def pieces(self, script: Script) -> list[tuple[str, str]]:
        """The reply as (delta field, text) pairs, one per token."""
        reasoning, answer = _tokens(script.reasoning), _tokens(script.answer)
        if script.style in ("reasoning_content", "reasoning"):
            return [(script.style, t) for t in reasoning] + [("content", t) for t in ["\n\n", *answer]]
        if script.style == "think":
            return [("content", t) for t in ["<think>", "\n", *reasoning, "\n", "</think>", "\n\n", *answer]]
        if script.style == "open":
            return [("content", t) for t in [*reasoning, "\n", "</th", "ink>", "\n\n", *answer]]
        return [("content", t) for t in answer]

    def _whole_reply(self, body: dict[str, Any]) -> JSONResponse:
        pieces = self.pieces(self.script)[: body.get("max_tokens") or None]
        text = "".join(t for kind, t in pieces if kind == "content")
        reasoning = "".join(t for kind, t in pieces if kind != "content")
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if reasoning:
            message["reasoning_content"] = reasoning
        return JSONResponse({
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": body["model"], "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 7, "completion_tokens": len(pieces), "total_tokens": 7 + len(pieces)},
        })


class _SSEResponse(Response):
    """The streamed reply, sent by hand so that a client disconnect is seen at once and recorded."""

    media_type = "text/event-stream"

    def __init__(self, server: StandinOpenAI, record: Record, script: Script) -> None:
        # No Content-Length: the body is streamed (chunked) until the reply ends.
        self.status_code = 200
        self.background = None
        self.raw_headers = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
        self.server = server
        self.record = record
        self.script = script

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        disconnected = asyncio.Event()

        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    disconnected.set()
                    return

        watcher = asyncio.create_task(watch())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            await self._events(send, disconnected)
        finally:
            watcher.cancel()

    async def _events(self, send: Send, disconnected: asyncio.Event) -> None:
        script, record, body = self.script, self.record, self.record.body
        chunk_id, created, model = f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), body["model"]
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        async def emit(payload: str) -> bool:
            """Send one SSE event; False once the client has gone (the generation is then aborted)."""
            if disconnected.is_set():
                record.disconnected = True
                return False
            await send({"type": "http.response.body", "body": payload.encode(), "more_body": True})
            return True

        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            event: dict[str, Any] = {"id": chunk_id, "object": "chat.completion.chunk", "created": created,
                                     "model": model, "system_fingerprint": "standin",
                                     "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                                  "finish_reason": finish}]}
            if include_usage:
                event["usage"] = None  # per the API: null on every chunk but the last
            return f"data: {json.dumps(event)}\n\n"

        if not await emit(chunk({"role": "assistant", "content": ""})):
            return
        pieces = self.server.pieces(script)
        max_tokens = body.get("max_tokens") or len(pieces)
        finish = "length" if max_tokens < len(pieces) else "stop"
        for index, (kind, text) in enumerate(pieces[:max_tokens]):
            if script.fail is not None and index == script.fail_after_tokens:
                await self._fail(emit, send)
                return
            if script.token_delay_s:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(disconnected.wait(), timeout=script.token_delay_s)
            if not await emit(chunk({kind: text})):
                return
            record.tokens_sent += 1
        if not await emit(chunk({}, finish)):
            return
        if include_usage:
            completion = record.tokens_sent
            reasoning = sum(1 for kind, _ in pieces[:max_tokens] if kind != "content")
            usage = {"prompt_tokens": 11, "completion_tokens": completion, "total_tokens": 11 + completion,
                     "completion_tokens_details": {"reasoning_tokens": reasoning}}
            event = {"id": chunk_id, "object": "chat.completion.chunk", "created": created, "model": model,
                     "choices": [], "usage": usage}
            if not await emit(f"data: {json.dumps(event)}\n\n"):
                return
        await emit("data: [DONE]\n\n")
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        record.finished = True

    async def _fail(self, emit: Any, send: Send) -> None:
        """Break the stream the way the script says."""
        fail = self.script.fail
        if fail == "malformed":
            await emit("data: {\"choices\": [{\"delta\": {\"content\": \"oops\"\n\n")
        elif fail == "bad_shape":
            await emit('data: {"choices": "not a list"}\n\n')
        elif fail == "error_event":
            await emit('data: {"error": {"message": "CUDA out of memory", "type": "server_error"}}\n\n')
        # "drop" and the others: the body just ends, with no finish_reason and no [DONE].
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def main() -> None:
    """Serve the stand-in on a port, for trying Atelier's openai backend by hand."""
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--model", default="deepseek-r1-standin")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--token-delay", type=float, default=0.05)
    args = parser.parse_args()
    server = StandinOpenAI(models=[args.model], api_key=args.api_key, script=Script(token_delay_s=args.token_delay))
    uvicorn.run(server.app(), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
