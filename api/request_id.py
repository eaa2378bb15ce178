"""X-Request-ID: every HTTP request gets an id, returned as the `X-Request-ID` response header and set in the log
context (services/log_context.py), so that a log line, a request log row and a user's report can be matched.

The id a trusted proxy sent (HAProxy's unique-id, nginx's $request_id) is kept, so that the proxy's log matches
too; from anyone else, or when malformed, a fresh one is drawn. The id is also written into the request's own
headers, so that what runs later for it (a Gradio event: gr.Request.headers) reads the same id.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from services import log_context

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HEADER = b"x-request-id"
# What proxies send: UUIDs, hex, HAProxy's default unique-id (hex, ':', '_'). Anything else (spaces, quotes, a
# header meant to forge log lines) is replaced.
VALID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
STATE_KEY = "request_id"


def new_request_id() -> str:
    """A fresh id: 32 hex digits."""
    return uuid.uuid4().hex


class RequestId:
    """ASGI middleware: the request's id in the log context, the request's headers and the response's headers."""

    def __init__(self, app: ASGIApp, trusted_proxies: Iterable[str] = ()) -> None:
        self.app = app
        self.trusted = _networks(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Assign the id, run the app with it, add it to the response."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = self._incoming(scope) or new_request_id()
        raw = request_id.encode()
        scope["headers"] = [(k, v) for k, v in scope.get("headers", []) if k != HEADER] + [(HEADER, raw)]
        scope.setdefault("state", {})[STATE_KEY] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != HEADER]
                message = {**message, "headers": [*headers, (HEADER, raw)]}
            await send(message)

        with log_context.bound(request_id=request_id, route=scope.get("path", "")):
            await self.app(scope, receive, send_with_id)

    def _incoming(self, scope: Scope) -> str | None:
        """The id a trusted proxy sent, when well formed."""
        values = [v for k, v in scope.get("headers", []) if k == HEADER]
        if len(values) != 1 or not self._from_proxy(scope):
            return None
        value = values[0].decode("latin-1")
        return value if VALID.match(value) else None

    def _from_proxy(self, scope: Scope) -> bool:
        peer = (scope.get("client") or ("", 0))[0]
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self.trusted)


def _networks(entries: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The entries that are addresses or networks (others are skipped, as api/auth.py skips them)."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            continue
    return networks
