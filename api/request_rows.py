"""The request log's rows for what the gateway sees (issue 26): every REST request, every Gradio request that costs
something (a login, an upload, an event that reads or writes), and every request the gateway refuses, each with who
asked, from where, what, how it ended and how long it took. Image jobs and chat replies are not written here: a
queue/join or /call the queue accepted for one becomes a job, and the job writes its own row when it ends
(services/images.py, services/chat.py), so that one request is one row.

`RequestRows`, a middleware just inside the request id's, keeps a `Note` of each request in its scope; the body caps
(api/internal_routes.py) and the gateway (api/gateway.py) fill it in as they judge the request, and the row is
written when the answer ends, off the request path: `RequestLog.record()` only appends to a queue
(services/request_log.py). Failed logins carry the name tried, never
the password; a request whose HTTP basic credentials were wrong is logged as the failed login it is.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.routing import get_route_path

from api.auth import header_dict
from services import log_context, metrics
from services.admission import REFUSAL_STATE_KEY
from services.request_log import RequestLog, RequestRecord

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Where a REST route leaves what it did (an admin action in words) for its row: request.state.<AUDIT_STATE_KEY>.
AUDIT_STATE_KEY = "atelier_audit"
# Where the gateway keeps the note of a request (api/gateway.py), in the ASGI scope's state.
NOTE_STATE_KEY = "atelier_request_note"
# An error answer's message is read from its first bytes: enough for any message Atelier or Gradio writes.
MAX_READ_BYTES = 4096
MAX_REASON = 500
# Routes never logged: probes (every 2 s per proxy and replica) and the metrics scrape would drown the rest.
QUIET_PREFIXES = ("/api/health",)


@dataclass
class Note:
    """What the gateway learns of one request while it passes: filled in as it goes, written when it ends."""

    kind: str | None
    route: str
    client: str = ""
    request_id: str = ""
    user: str = ""
    at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    started: float = field(default_factory=time.perf_counter)
    http_status: int | None = None
    limit: str = ""  # the limit that refused it (metrics.LIMITS), if one did
    reason: str = ""
    job: bool = False  # a job's request: the job writes the row
    logged: bool = True  # False for what is never logged (pages, assets, streams): unless refused

    def outcome(self, state: dict[str, Any]) -> tuple[str, str]:
        """The row's status and reason, from the answer and what the app left in the request's state."""
        limit = self.limit or str(state.get(REFUSAL_STATE_KEY) or "")
        if limit:
            return "refused", self.reason or limit
        if self.http_status is None:
            return "cancelled", "the client went away before the answer"
        if self.http_status < 400:
            return "done", str(state.get(AUDIT_STATE_KEY) or "")
        return "failed", self.reason or f"HTTP {self.http_status}"


def watch(send: Send, note: Note) -> Send:
    """`send`, noting the answer's status and, for an error, its message (the `detail` of a JSON answer)."""
    reading = False

    async def noted(message: dict[str, Any]) -> None:
        nonlocal reading
        if message["type"] == "http.response.start":
            note.http_status = int(message["status"])
            reading = note.http_status >= 400 and not note.reason
        elif message["type"] == "http.response.body" and reading:
            reading = False
            note.reason = _message_of(bytes(message.get("body", b""))[:MAX_READ_BYTES]) or note.reason
        await send(message)

    return noted


def _message_of(body: bytes) -> str:
    """An error answer's message: its JSON `detail` (or `error`), else its text."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace").strip()[:MAX_REASON]
    if isinstance(data, dict):
        detail = data.get("detail", data.get("error", ""))
        if isinstance(detail, list):  # FastAPI's validation errors: each field and its message, as a person reads them
            detail = "; ".join(f"{e['loc'][-1]}: {e['msg']}" if e.get("loc") else str(e.get("msg", ""))
                               for e in detail if isinstance(e, dict)) or json.dumps(detail)
        text = detail if isinstance(detail, str) else json.dumps(detail)
        return text[:MAX_REASON]
    return ""


def note_of(scope: Scope) -> Note:
    """The request's note (a fresh one, written by nobody, when no RequestRows runs outside: a gateway alone)."""
    state = scope.setdefault("state", {})
    note = state.get(NOTE_STATE_KEY)
    if note is None:
        note = state[NOTE_STATE_KEY] = Note(None, scope.get("path", ""), request_id=str(state.get("request_id", "")))
    return note  # type: ignore[no-any-return]


def refused_here(scope: Scope, limit: str = "") -> None:
    """A refusal by Atelier's own checks (the body caps): logged whatever the route, with the limit that refused."""
    note = note_of(scope)
    note.kind = note.kind or ("upload" if "/upload" in note.route else "read")
    note.logged, note.limit = True, note.limit or limit


class RequestRows:
    """ASGI middleware: each request's note, its request log row when it ends, and its count in the metrics."""

    def __init__(self, app: ASGIApp, *, client_ip: Callable[[Scope, dict[str, str]], str],
                 request_log: RequestLog | None, replica: str = "") -> None:
        self.app = app
        self.client_ip = client_ip  # the client's address, X-Forwarded-For believed from trusted proxies only
        self.request_log = request_log
        self.replica = replica

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Note the request, pass it on, write its row once its answer ended."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = get_route_path(scope)
        note = note_of(scope)
        note.route, note.client = path, self.client_ip(scope, header_dict(scope))
        note.logged = path.startswith("/api/") and not path.startswith(QUIET_PREFIXES)
        try:
            with log_context.bound(client=note.client):
                await self.app(scope, receive, watch(send, note))
        finally:
            self.done(note, scope["state"])

    def done(self, note: Note, state: dict[str, Any]) -> None:
        """The request ended: its row (unless it became a job, or is one of those never logged) and its count."""
        status, reason = note.outcome(state)
        if note.kind is None or (note.job and status == "done") or not (note.logged or status != "done"):
            return
        if status == "refused":
            metrics.refused(note.limit or str(state.get(REFUSAL_STATE_KEY) or ""))
        metrics.request_done(note.kind, status)
        if self.request_log is None:
            return
        self.request_log.record(RequestRecord(
            note.kind, status, started_at=note.at, request_id=note.request_id, user=note.user, client=note.client,
            route=note.route, reason=reason, http_status=note.http_status,
            duration_s=round(time.perf_counter() - note.started, 4), replica=self.replica))
