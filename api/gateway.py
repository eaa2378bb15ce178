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

from api.auth import USER_STATE_KEY, Authenticator, header_dict

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
                 blocks: Any, file_roots: list[Path], max_queue: int, enforce: bool = True) -> None:
        self.app = app
        self.auth = auth
        self.limiter = limiter
        self.limits: dict[str, RateLimitItem] = {kind: parse(text) for kind, text in limits.items()}
        self.blocks = blocks
        self.file_roots = [p.resolve() for p in file_roots]
        self.max_queue = max_queue
        self.enforce = enforce  # rate limits apply (api.auth.limits_apply); login throttling always does
        self.session_owner: OrderedDict[str, str] = OrderedDict()  # Gradio session hash -> who joined with it

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
        kind = self._kind(path, method, data)
        try:
            user = await self._admit(scope, headers, kind, data)
        except TooMany as refused:
            await _reply(send, 429, f"Too many {_NOUNS[refused.kind]}: the limit is {refused.item}. "
                                    f"Try again in {refused.retry} s.", {"retry-after": str(refused.retry)})
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

    async def _admit(self, scope: Scope, headers: dict[str, str], kind: str | None,
                     data: dict[str, Any]) -> str | None:
        """Who is asking (None: nobody valid), with the request counted against its limit; TooMany when over."""
        user: str | None = None
        path = scope["path"].rstrip("/")
        # Only routes that act on a user resolve one: pages and assets never cost an argon2 check.
        if path.startswith("/api/") or kind not in (None, "login") or path == f"{GRADIO}/cancel":
            user = await self.auth.authenticate(
                headers, lambda name: self._count("login", self._login_key(scope, headers, name)))
            scope.setdefault("state", {})[USER_STATE_KEY] = user  # the REST routes read it: verified once
        # Login attempts are throttled whatever the setting: that guards passwords, not the GPU.
        if kind is not None and (self.enforce or kind == "login"):
            if kind == "login":
                key = self._login_key(scope, headers, data.get("username", ""))
            else:
                key = f"user:{user}" if user else f"ip:{self.auth.client_ip(scope, headers)}"
            self._count(kind, key)
        return user

    def _login_key(self, scope: Scope, headers: dict[str, str], name: str) -> str:
        """Login attempts count per address and account: guessing one password is throttled, a shared address
        is not locked out, and the login form and Basic credentials share the count."""
        return f"ip:{self.auth.client_ip(scope, headers)}:login:{name}"

    def _count(self, kind: str, key: str) -> None:
        """Count one hit against `kind`'s limit for `key`; TooMany when it is over."""
        item = self.limits[kind]
        if not self.limiter.limiter.hit(item, kind, key):
            reset, _ = self.limiter.limiter.get_window_stats(item, kind, key)
            raise TooMany(kind, item, max(1, math.ceil(reset - time.time())))

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


class TooMany(Exception):
    """A hit over a limit: which one, and the seconds until it frees up."""

    def __init__(self, kind: str, item: RateLimitItem, retry: int) -> None:
        super().__init__(kind)
        self.kind, self.item, self.retry = kind, item, retry


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
