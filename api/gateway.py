"""The gateway in front of Gradio's routes: rate limits, the busy answer, file and cancel guards.

slowapi's own middleware never sees the routes of a mounted Gradio app, so this ASGI middleware on the parent
app applies slowapi's Limiter (its `limits` storage: memory, or redis for several replicas) to Gradio's costly
routes itself, keyed by user when logged in, otherwise by client address.
"""

from __future__ import annotations

import json
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from limits import RateLimitItem, parse
from slowapi import Limiter

from api.auth import Authenticator, header_dict

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

GRADIO = "/gradio_api"
# A Gradio event's concurrency group says what it costs.
KIND_BY_CONCURRENCY = {"image": "image", "text": "chat"}
MAX_SESSIONS = 50_000


class Gateway:
    """ASGI middleware: limits per kind of request, per-session ownership, and which files may be served."""

    def __init__(self, app: ASGIApp, *, auth: Authenticator, limiter: Limiter, limits: dict[str, str],
                 blocks: Any, file_roots: list[Path], max_queue: int,
                 session_owner: OrderedDict[str, str] | None = None) -> None:
        self.app = app
        self.auth = auth
        self.limiter = limiter
        self.limits: dict[str, RateLimitItem] = {kind: parse(text) for kind, text in limits.items()}
        self.blocks = blocks
        self.file_roots = [p.resolve() for p in file_roots]
        self.max_queue = max_queue
        # Gradio session hash -> who joined with it; shared with the SessionJanitor, which drops ended sessions.
        self.session_owner: OrderedDict[str, str] = OrderedDict() if session_owner is None else session_owner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the request, then hand it (with its body replayed) to the app."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        headers = header_dict(scope)
        if path.startswith(f"{GRADIO}/file="):
            if not self._file_allowed(path.removeprefix(f"{GRADIO}/file=")):
                await _reply(send, 403, "This file is not yours to fetch, or does not exist.")
                return
            await self.app(scope, receive, send)
            return
        body: bytes | None = None
        data: dict[str, Any] = {}
        if method == "POST" and path.rstrip("/") in (f"{GRADIO}/queue/join", f"{GRADIO}/cancel", "/login"):
            body = await _read_body(receive)
            data = _parse(body, headers.get("content-type", ""))
        user = self.auth.user_from_headers(headers)
        kind = self._kind(path, method, data)
        if kind is not None:
            key = f"user:{user}" if user else f"ip:{self.auth.client_ip(scope, headers)}"
            if kind == "login":
                # Per address and account: guessing one password is throttled, a shared address is not locked.
                key = f"ip:{self.auth.client_ip(scope, headers)}:login:{data.get('username', '')}"
            item = self.limits[kind]
            if not self.limiter.limiter.hit(item, kind, key):
                reset, _ = self.limiter.limiter.get_window_stats(item, kind, key)
                retry = max(1, math.ceil(reset - time.time()))
                await _reply(send, 429, f"Too many {_NOUNS[kind]}: the limit is {item}. Try again in {retry} s.",
                             {"retry-after": str(retry)})
                return
        if path.rstrip("/") == f"{GRADIO}/queue/join" and body is not None:
            if len(self.blocks._queue) >= self.max_queue:
                await _reply(send, 503, f"Atelier is busy: {self.max_queue} jobs are already waiting. "
                                        "Try again shortly.", {"retry-after": "10"})
                return
            if (session := data.get("session_hash")) and user is not None:
                self._remember(session, user)
        if path.rstrip("/") == f"{GRADIO}/cancel" and not self._may_cancel(data, user):
            await _reply(send, 403, "You can only stop your own jobs.")
            return
        await self.app(scope, _replay(body, receive) if body is not None else receive, send)

    def _kind(self, path: str, method: str, data: dict[str, Any]) -> str | None:
        """Which limit a Gradio request counts against, or None for free ones (pages, assets, reads by GET)."""
        if method != "POST":
            return None
        clean = path.rstrip("/")
        if clean == "/login":
            return "login"
        if clean == f"{GRADIO}/upload":
            return "upload"
        if clean == f"{GRADIO}/queue/join":
            fn = self.blocks.fns.get(data.get("fn_index"))
            return KIND_BY_CONCURRENCY.get(getattr(fn, "concurrency_id", None), "read")
        if clean.startswith(f"{GRADIO}/call/"):
            api_name = clean.removeprefix(f"{GRADIO}/call/").split("/")[0]
            fn = next((f for f in self.blocks.fns.values() if f.api_name == api_name), None)
            return KIND_BY_CONCURRENCY.get(getattr(fn, "concurrency_id", None), "read")
        return None  # REST routes under /api carry slowapi's decorator instead

    def _file_allowed(self, raw: str) -> bool:
        """Only files Gradio itself put in its cache or upload folder (unguessable hashed folders) are served."""
        from urllib.parse import unquote

        try:
            target = Path(unquote(raw)).resolve()
        except (OSError, ValueError):
            return False
        return any(target.is_relative_to(root) for root in self.file_roots)

    def _remember(self, session: str, user: str) -> None:
        self.session_owner[session] = user
        self.session_owner.move_to_end(session)
        while len(self.session_owner) > MAX_SESSIONS:
            self.session_owner.popitem(last=False)

    def _may_cancel(self, data: dict[str, Any], user: str | None) -> bool:
        """A Stop is honoured only from the user whose session the event belongs to."""
        session = data.get("session_hash")
        owner = self.session_owner.get(session) if session else None
        if owner is not None and owner != user:
            return False
        event = self.blocks._queue.event_ids_to_events.get(data.get("event_id"))
        return event is None or event.session_hash == session


_NOUNS = {"image": "image jobs", "chat": "chat messages", "upload": "uploads", "login": "login attempts",
          "read": "requests"}


def _parse(body: bytes, content_type: str) -> dict[str, Any]:
    """A JSON or form body as a dict ({} when it is neither)."""
    if "application/x-www-form-urlencoded" in content_type:
        from urllib.parse import parse_qs

        return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # later messages: the client's disconnect

    return replay


async def _reply(send: Send, status: int, message: str, headers: dict[str, str] | None = None) -> None:
    payload = json.dumps({"detail": message, "error": message}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})
