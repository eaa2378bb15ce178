"""OpenAI's chat completions (`POST /v1/chat/completions`) onto Atelier's chat service.

A call is a new conversation in the caller's history holding the messages sent, answered as the UI answers: the
same model, queue quota, batching, cache and Stop. R1's reasoning goes out apart from the answer, in
`reasoning_content` (DeepSeek's API) and `reasoning` (vLLM's), never in `content`; reasoning sent back in the input
is dropped, as R1's template requires. A stop sequence ends the answer before it and is never sent, even when it
arrives split across tokens: the stream holds back the tail of the answer that could be the start of one until the
next token settles it.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from api.dialects.common import ApiProblem, DialectContext, finish, invalid, run_sync
from contracts import InvalidRequest
from services.chat import ChatHandle, ChatSnapshot
from services.jobs import FINAL_STATES

MAX_STOPS = 4  # as OpenAI allows
# After a chunk goes out, the tokens of the next this many seconds go out together in one chunk; the first token and
# the end go out at once.
COALESCE_S = 0.02
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


class ChatMessage(BaseModel):
    """One message: a role and its text (a string, or a list of text parts)."""

    model_config = ConfigDict(extra="ignore")

    role: str
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    reasoning_content: str | None = Field(default=None, description="Dropped: R1 never sees earlier reasoning.")
    reasoning: str | None = Field(default=None, description="Dropped: R1 never sees earlier reasoning.")


class StreamOptions(BaseModel):
    """include_usage: a last chunk with the token counts."""

    include_usage: bool = False


class ChatBody(BaseModel):
    """The request: OpenAI's fields that apply, and `thinking_budget` (Atelier's): reasoning tokens before the model
    must answer, 0 for no limit."""

    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[ChatMessage]
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int | None = None
    user: str | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logprobs: bool | None = None
    tools: list[Any] | None = None
    response_format: dict[str, Any] | None = None
    thinking_budget: int | None = Field(default=None, description="Atelier: reasoning tokens after which the model "
                                                                  "must answer; 0: no limit; empty: the default.")


def text_model_ids(ctx: DialectContext) -> list[str]:
    """The ids /v1/models lists for the text model: the configured model, and its label."""
    settings = ctx.settings
    own = settings.openai_model if settings.text_backend == "openai" else settings.resolved_text_model
    return [i for i in dict.fromkeys([own or "", ctx.services.default_models["text"]]) if i]


def checked(ctx: DialectContext, body: ChatBody) -> tuple[list[dict[str, str]], Any, tuple[str, ...]]:
    """(messages, options, stop sequences) for the chat service, or a 400 naming the field."""
    if body.model not in text_model_ids(ctx):
        raise ApiProblem(404, f"The model {body.model!r} does not exist here; GET /v1/models lists "
                              f"{', '.join(text_model_ids(ctx))} for chat.", field="model", code="model_not_found")
    errors = unsupported(body)
    messages = []
    for index, message in enumerate(body.messages):
        text, problem = message_text(message, index)
        if problem:
            errors |= problem
        messages.append({"role": ROLES.get(message.role, message.role), "content": text})
    stops = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    if len(stops) > MAX_STOPS or any(not s for s in stops):
        errors["stop"] = f"stop takes up to {MAX_STOPS} sequences, none of them empty."
    if errors:
        raise invalid(errors)
    tokens_field = "max_completion_tokens" if body.max_completion_tokens is not None else "max_tokens"
    try:
        options = ctx.services.chat.options(
            temperature=body.temperature, top_p=body.top_p, seed=body.seed, thinking_budget=body.thinking_budget,
            max_new_tokens=body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens)
    except InvalidRequest as err:
        raise invalid({tokens_field if k == "max_new_tokens" else k: v.replace("max_new_tokens", tokens_field)
                       for k, v in err.errors.items()}) from None
    return messages, options, tuple(stops)


def unsupported(body: ChatBody) -> dict[str, str]:
    """{param: message} for what the model cannot do here, unless it asks for nothing."""
    errors: dict[str, str] = {}
    if body.n not in (None, 1):
        errors["n"] = f"n must be 1: Atelier writes one reply per request, got {body.n}."
    for name in ("frequency_penalty", "presence_penalty"):
        if getattr(body, name) not in (None, 0):
            errors[name] = f"{name} is not supported here; leave it out or send 0."
    if body.logprobs:
        errors["logprobs"] = "logprobs are not supported here; leave it out or send false."
    if body.tools:
        errors["tools"] = "tools (function calling) are not supported by this model here."
    if body.response_format and body.response_format.get("type", "text") != "text":
        errors["response_format"] = "response_format must be text: structured output is not supported here."
    return errors


def message_text(message: ChatMessage, index: int) -> tuple[str, dict[str, str]]:
    """A message's text (text parts joined) and {param: message} when it is no text or its role is unknown."""
    where = f"messages.{index}"
    if message.role not in ROLES:
        return "", {f"{where}.role": f"{where}.role must be system, developer, user or assistant, got "
                                     f"{message.role!r}."}
    content = message.content
    if content is None:
        return "", {f"{where}.content": f"{where}.content must be text."}
    if isinstance(content, str):
        return content, {}
    texts = [part.get("text") for part in content if isinstance(part, dict)]
    if any(part.get("type") != "text" for part in content) or not all(isinstance(t, str) for t in texts):
        return "", {f"{where}.content": f"{where}.content: only text parts are supported here (no images or "
                                        "audio)."}
    return "\n".join(t for t in texts if t), {}


async def chat_completions(ctx: DialectContext, request: Request, user: str, body: ChatBody) -> Any:
    """Start the reply as the UI would; stream it as server-sent events, or answer once it ends."""
    def begin() -> tuple[ChatHandle, tuple[str, ...]]:
        # Checked and started in one trip to a worker thread: each trip is a hand-off the reply waits for.
        messages, options, stops = checked(ctx, body)

        def start(ref: str) -> ChatHandle:
            try:
                return ctx.services.chat.start_messages(messages, user, options, source="openai", ref=ref,
                                                        stop=stops)
            except InvalidRequest as err:
                raise invalid({_param(k): v for k, v in err.errors.items()}) from None

        return ctx.admit(user, "chat", "openai", ctx.services.text_slot, start), stops

    handle, stops = await run_sync(begin)
    reply = Reply(body.model, handle)
    if body.stream:
        usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(reply.events(stops, usage), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache", "x-accel-buffering": "no"})
    snap: ChatSnapshot = await finish(handle, request)
    if snap.status == "failed":
        raise ApiProblem(503, f"The reply failed: {snap.error or snap.message}", code="reply_failed")
    return reply.completion(snap)


def _param(field: str) -> str:
    """A chat service's field in OpenAI's names (messages[2].content -> messages.2.content)."""
    return field.replace("[", ".").replace("]", "")


def holdback(text: str, stops: tuple[str, ...]) -> int:
    """How many characters at the end of `text` could be the start of a stop sequence (not to be sent yet)."""
    return max((k for stop in stops for k in range(len(stop) - 1, 0, -1) if text.endswith(stop[:k])), default=0)


class Reply:
    """One reply in OpenAI's shapes: the whole completion, or its stream of chunks."""

    def __init__(self, model: str, handle: ChatHandle) -> None:
        self.model, self.handle = model, handle
        self.id = f"chatcmpl-{secrets.token_hex(12)}"
        self.created = int(time.time())

    def completion(self, snap: ChatSnapshot) -> dict[str, Any]:
        """The chat.completion object of a finished reply."""
        message = {"role": "assistant", "content": snap.answer, "reasoning_content": snap.reasoning or None,
                   "reasoning": snap.reasoning or None, "refusal": None}
        return {"id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "message": message, "logprobs": None,
                             "finish_reason": finish_reason(snap)}],
                "usage": usage_of(snap), "system_fingerprint": None,
                "conversation_id": snap.conversation_id}

    def chunk(self, delta: dict[str, Any], reason: str | None = None) -> str:
        """One chat.completion.chunk as an SSE event."""
        return sse({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                    "system_fingerprint": None,
                    "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}]})

    async def events(self, stops: tuple[str, ...], include_usage: bool) -> AsyncIterator[str]:
        """The stream: the role, reasoning and answer deltas as they come, the finish reason, the usage when asked,
        then [DONE]; a client that goes away stops the reply (the watch stops its job when closed early)."""
        first = json.loads(self.chunk({"role": "assistant", "content": ""})[6:])
        # Atelier's extension, on the first chunk only: the conversation this reply is kept in (/api/conversations).
        yield sse({**first, "conversation_id": self.handle.snapshot().conversation_id})
        reasoning = answer = 0
        last: ChatSnapshot | None = None
        # After each chunk with tokens, the next comes at least COALESCE_S later and carries every token of that time:
        # a chunk (and a wake-up of the event loop) per token cost a fast model a third of its decode rate, the loop
        # taking the GIL from the model's thread each time.
        async for snap in self.handle.watch(poll_s=None, hold_s=COALESCE_S, hold=lambda s: bool(s.reasoning
                                                                                                or s.answer)):
            last = snap
            if len(snap.reasoning) > reasoning:
                piece, reasoning = snap.reasoning[reasoning:], len(snap.reasoning)
                yield self.chunk({"reasoning_content": piece, "reasoning": piece})
            ready = len(snap.answer) - (0 if snap.status in FINAL_STATES else holdback(snap.answer, stops))
            if ready > answer:
                piece, answer = snap.answer[answer:ready], ready
                yield self.chunk({"content": piece})
        if last is None or last.status == "failed":
            error = (last.error or last.message) if last else "the reply did not start"
            yield sse({"error": {"message": f"The reply failed: {error}", "type": "server_error", "param": None,
                                 "code": "reply_failed"}})
        else:
            yield self.chunk({}, finish_reason(last))
            if include_usage:
                yield sse({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                           "model": self.model, "choices": [], "usage": usage_of(last)})
        yield "data: [DONE]\n\n"


def sse(payload: dict[str, Any]) -> str:
    """A server-sent event carrying JSON."""
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"


def finish_reason(snap: ChatSnapshot) -> str:
    """OpenAI's finish_reason: length when the token limit ended the reply, else stop (a reply stopped by its
    owner, from the UI or by closing the connection, ends as stop too)."""
    return "length" if (snap.usage or {}).get("finish_reason") == "length" else "stop"


def usage_of(snap: ChatSnapshot) -> dict[str, Any]:
    """OpenAI's usage object from the reply's token counts."""
    usage = snap.usage or {}
    prompt, completion = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "completion_tokens_details": {"reasoning_tokens": int(usage.get("reasoning_tokens", 0))}}
