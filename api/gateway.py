"""The gateway in front of Gradio's routes: rate limits, the busy answer, who owns the sessions, events, uploads
and files a request names (api/ownership.py), and the size and shape of the bodies it reads (Gradio's own routes
answer some malformed ones with a 500).

slowapi's own middleware never sees the routes of a mounted Gradio app, so this ASGI middleware on the parent
app applies slowapi's Limiter (its `limits` storage: memory, or redis for several replicas) to Gradio's costly
routes itself, keyed by user when logged in, otherwise by client address.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem, parse
from slowapi import Limiter
from starlette.routing import get_route_path

from api import gradio_internals
from api.auth import USER_STATE_KEY, Authenticator, basic_credentials, header_dict
from api.ownership import (
    REQUEST_USER,
    TOO_MANY_SESSIONS,
    FileGrants,
    NotYours,
    SessionGuard,
    gradio_file,
    judge_file,
    named_ids,
    read_replies,
)
from api.request_rows import Note, note_of
from services import log_context
from services.admission import UNAVAILABLE, UNAVAILABLE_MESSAGE, Claims, ClaimsFull
from services.user_limits import Limits, looser

log = logging.getLogger("atelier.gateway")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

GRADIO = "/gradio_api"
CALL = f"{GRADIO}/call/"
# Routes that act for a user: the gateway resolves who asks (login cookie, HTTP basic or an API key) before them.
USER_ROUTES = ("/api/", "/v1/", "/sdapi/", "/controlnet/", f"{GRADIO}/mcp")
# Gradio's routes that run an event directly (refused for queued events while the API is closed): their bodies
# may name a session, so the gateway reads them too.
PREDICT = (f"{GRADIO}/run/", f"{GRADIO}/api/")
# A Gradio event's concurrency group says what it costs.
KIND_BY_CONCURRENCY = {"image": "image", "text": "chat", "admin": "admin"}
# queue/join, call, cancel and login bodies hold prompts and settings, never files (those go to /upload): a
# prompt at its longest is tens of KB, so 1 MiB is roomy, and no one holds the server's memory with a huge body.
MAX_BODY_BYTES = 1024 * 1024
# Gradio's session hashes, event ids and upload ids are 10 to 36 characters; each one named is remembered (Claims).
MAX_ID_CHARS = 256
MAX_LOGIN_FIELDS = 8
# The fields of the JSON bodies the gateway reads, by route: (type, required). Others pass on to Gradio.
JSON_FIELDS: dict[str, dict[str, tuple[type, bool]]] = {
    f"{GRADIO}/queue/join": {"data": (list, True), "fn_index": (int, True), "session_hash": (str, True),
                             "event_id": (str, False), "trigger_id": (int, False)},
    f"{GRADIO}/cancel": {"session_hash": (str, True), "fn_index": (int, True), "event_id": (str, True)},
    # A no-op in Gradio 6 that its clients still call after a cancel; FastAPI answers a form body there with a 500.
    f"{GRADIO}/reset": {"event_id": (str, True)},
}
# Gradio's routes whose answers carry files or event ids: a JSON answer (read whole) or an event stream, by method.
WATCHED_JSON = (f"{GRADIO}/queue/join", f"{GRADIO}/upload", f"{GRADIO}/component_server", CALL, *PREDICT)
WATCHED_STREAMS = (f"{GRADIO}/queue/data", CALL)



@dataclass(frozen=True)
class Dialect:
    """Another API served beside Gradio's (OpenAI's /v1, AUTOMATIC1111's /sdapi/v1, MCP): which limit each of its
    requests counts against (`kind(method, path)`, None for none), its refusals in its own error shape
    (`refusal(status, message)` gives the JSON body), and the largest body each of its routes takes
    (`body_limit(path)`; its largest anywhere is `max_body`), which api/internal_routes.py applies."""

    prefix: str
    kind: Callable[[str, str], str | None]
    refusal: Callable[[int, str], bytes]
    body_limit: Callable[[str], int] = lambda path: MAX_BODY_BYTES
    max_body: int = MAX_BODY_BYTES


class Gateway:
    """ASGI middleware: limits per kind of request, who owns each session, event and upload, and which files may
    be served to whom."""

    def __init__(self, app: ASGIApp, *, auth: Authenticator, limiter: Limiter, limits: dict[str, str],
                 blocks: Any, grants: FileGrants, max_queue: int, enforce: bool = True,
                 guard: SessionGuard | None = None, limits_of: Callable[[str], Limits] | None = None,
                 dialects: Sequence[Dialect] = ()) -> None:
        self.app = app
        self.dialects = list(dialects)
        self.auth = auth
        self.limiter = limiter
        self.limits: dict[str, RateLimitItem] = {kind: parse(text) for kind, text in limits.items()}
        # Each user's own limits (an admin's overrides, and whether the account may act); None: `limits` for all.
        self.limits_of = limits_of
        self.blocks = blocks
        # Gradio's upload and cache folder: the only files it may serve, each to the users it handed it to.
        self.grants = grants
        self.max_queue = max_queue
        self.enforce = enforce  # rate limits apply (api.auth.limits_apply); login throttling always does
        # Shared with the janitor (which renews the claims of the sessions Gradio holds) and Gradio's state holder.
        self.guard = guard or SessionGuard(Claims(), blocks, auth.required)
        self._endpoints: dict[str, list[dict[str, Any]]] | None = None  # api_name -> parameters, read once

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the request, then hand it (with its body replayed) to the app; what it learns goes into the request's
        note (api/request_rows.py) for its row."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self._pass(scope, receive, send, note_of(scope))

    async def _pass(self, scope: Scope, receive: Receive, send: Send, note: Note) -> None:
        path, method = get_route_path(scope), scope["method"]
        headers = header_dict(scope)
        dialect = next((d for d in self.dialects if path.startswith(d.prefix)), None)
        shape = dialect.refusal if dialect is not None else None
        if dialect is not None and "\n" in path:  # Starlette's mounts never match a line break: it would reach Gradio
            await _reply(send, 404, "Not Found: no route has a line break in its path.", shape=shape)
            return
        if path.startswith(f"{GRADIO}/proxy="):  # Gradio proxies only the Spaces an app loads: Atelier loads none
            await _reply(send, 404, "Atelier proxies nothing.")
            return
        if (target := gradio_file(scope)) is not None:
            note.kind = "read"  # logged when refused
            await self._serve_file(scope, receive, send, headers, target)
            return
        try:
            body, data, user = await self._judge(scope, receive, headers, path, method, note, dialect)
        except REFUSALS as refused:
            await self._refuse(send, note, refused, shape)
            return
        clean = path.rstrip("/")
        if clean == f"{GRADIO}/queue/join" and gradio_internals.queue_size(self.blocks) >= self.max_queue:
            note.limit = "busy"
            await _reply(send, 503, f"Atelier is busy: {self.max_queue} jobs are already waiting. "
                                    "Try again shortly.", {"retry-after": "10"})
            return
        if clean == f"{GRADIO}/cancel" and not self._may_cancel(data):
            await _reply(send, 403, "You can only stop your own jobs.")
            return
        receive = _replay(body, receive) if body is not None else receive
        if (context := scope["state"].get(log_context.SCOPE_KEY)) is not None:
            context["user"] = user or ""  # the Gradio event's handler binds it too
        with log_context.bound(user=user or ""):
            if user is None or not self.auth.required:  # one user: nothing to grant, nobody to tell apart
                await self.app(scope, receive, send)
                return
            token = REQUEST_USER.set(user) if clean == f"{GRADIO}/component_server" else None
            try:
                await self.app(scope, receive, self._watched(clean, method, user, send))
            finally:
                if token is not None:
                    REQUEST_USER.reset(token)

    async def _refuse(self, send: Send, note: Note, refused: Exception,
                      shape: Callable[[int, str], bytes] | None = None) -> None:
        """Answer one of REFUSALS (in another API's own error `shape` for its routes), noting which limit refused (if
        one did) for the request's row."""
        status, message, extra = _refusal(refused)
        note.kind = note.kind or "read"
        note.limit = refused.kind if isinstance(refused, TooMany) else (
            "" if isinstance(refused, Refused | NotYours) else ("busy" if isinstance(refused, ClaimsFull)
                                                                 else "unavailable"))
        note.reason = message
        await _reply(send, status, message, extra, shape=shape)

    async def _judge(self, scope: Scope, receive: Receive, headers: dict[str, str], path: str, method: str,
                     note: Note, dialect: Dialect | None = None) -> tuple[bytes | None, dict[str, Any], str | None]:
        """The body (None when not read), its fields and the user of a request that may pass; one of REFUSALS
        raised otherwise. `note` learns what the request is and who asks."""
        body, data = await self._read(scope, receive, headers, path, method)
        kind = dialect.kind(method, path) if dialect is not None else self._kind(path, method, data)
        self._describe(note, scope, path, kind, data)
        user = await self._admit(scope, headers, kind, data, note)
        named = named_ids(path, method, scope.get("query_string", b""), data)
        if any(not 0 < len(ident) <= MAX_ID_CHARS for _, ident in named):
            raise Refused(422, f"A session, event or upload id is 1 to {MAX_ID_CHARS} characters.")
        self.guard.check(named, user)
        self._check_files(data.get("data"), user)  # in Gradio's folder was checked with the body; now whose
        return body, data, user

    async def _read(self, scope: Scope, receive: Receive, headers: dict[str, str], path: str,
                    method: str) -> tuple[bytes | None, dict[str, Any]]:
        """The body (None when the gateway does not read it) and its fields, read capped and checked before
        anything else: a malformed request changes nothing, costs nothing."""
        clean = path.rstrip("/")
        if method != "POST" or not (clean in (*JSON_FIELDS, "/login") or clean.startswith((CALL, *PREDICT))):
            return None, {}
        body = await _read_body(receive, headers)
        data = await self._checked_body(clean, body, headers.get("content-type", ""), scope, receive)
        completed = self._with_defaults(clean, body, data)
        if completed is not body:
            body = completed
            scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"content-length"] + [
                (b"content-length", str(len(body)).encode())]
        return body, data

    def _watched(self, path: str, method: str, user: str, send: Send) -> Send:
        """`send`, reading the answers that hand out files or event ids: what they name becomes the user's."""

        def inspect(answer: Any) -> None:
            self.grants.grant(user, answer)
            try:
                self.guard.mint(user, answer)
            except UNAVAILABLE:  # the job joined; its id stays unclaimed, so nobody can take it
                log.warning("Redis is unreachable: event of %s not recorded as theirs", user)

        if method == "POST" and path.startswith(WATCHED_JSON):
            return read_replies(send, inspect, whole=True)
        if method == "GET" and path.startswith(WATCHED_STREAMS):
            return read_replies(send, inspect, whole=False)
        return send

    async def _serve_file(self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str],
                          target: str) -> None:
        """Gradio's file route, for files of its folder that it handed to this user (with accounts)."""
        real = judge_file(target, self.grants.root)
        if real is not None and self.auth.required:
            try:
                user = await self.auth.authenticate(
                    headers, lambda name: self._count("login", self._login_key(scope, headers, name)))
            except REFUSALS as refused:
                await _reply(send, *_refusal(refused))
                return
            if user is None or not (self.grants.allowed(user, real) or real in self._kept()):
                real = None
        if real is None:
            await _reply(send, 403, "This file is not yours to fetch, or does not exist.")
            return
        await self.app(scope, receive, send)

    def _kept(self) -> set[str]:
        """The files Gradio keeps for every user (components' default values), as real paths."""
        return {os.path.realpath(p) for p in gradio_internals.kept_files(self.blocks)}

    async def _admit(self, scope: Scope, headers: dict[str, str], kind: str | None, data: dict[str, Any],
                     note: Note) -> str | None:
        """Who is asking (None: nobody valid), with the request counted against its limit (the user's own, when an
        admin set one); TooMany when over, Refused for a disabled account."""
        user: str | None = None
        path = get_route_path(scope).rstrip("/")
        # Only routes that act on a user or name a session resolve one: pages and assets never cost an argon2 check.
        # /metrics: an admin may read it with Basic credentials, which count against the login throttle like any.
        if (path.startswith(USER_ROUTES) or kind not in (None, "login") or path.startswith(RESOLVED)
                or path == "/metrics"):
            user = await self.auth.authenticate(
                headers, lambda name: self._count("login", self._login_key(scope, headers, name)))
            scope.setdefault("state", {})[USER_STATE_KEY] = user  # the REST routes read it: verified once
            self._note_user(note, user, headers)
        limits = self._limits(user)
        if limits is not None and limits.disabled:
            raise Refused(403, "This account is disabled. Ask an admin of this server.")
        # Login attempts are throttled whatever the setting: that guards passwords, not the GPU.
        if kind is not None and (self.enforce or kind == "login"):
            if kind == "login":
                self._count(kind, self._login_key(scope, headers, data.get("username", "")))
            else:
                key = f"user:{user}" if user else f"ip:{self.auth.client_ip(scope, headers)}"
                counted = "read" if kind == "admin" else kind  # the admin panel's events count as reads
                item = limits.item(counted) if limits is not None else None
                if kind == "admin" and item is not None:  # never less than the setting's (user_limits.looser)
                    item = looser(item, self.limits["read"])
                self._count(counted, key, item)
        return user

    def _limits(self, user: str | None) -> Limits | None:
        """The user's own limits, when the gateway knows each user's (None: the settings' for everyone)."""
        if self.limits_of is None or not user or not self.auth.required:
            return None
        return self.limits_of(user)

    def _note_user(self, note: Note, user: str | None, headers: dict[str, str]) -> None:
        """Who asks, for the request's row; wrong HTTP basic credentials make the request a failed login by the
        name tried."""
        if user is not None:
            note.user = note.user or user
            return
        if self.auth.required and (credentials := basic_credentials(headers)) is not None:
            note.kind, note.user, note.logged = "login", credentials.name, True
            note.reason = "wrong name or password, or a disabled account (HTTP basic)"

    def _describe(self, note: Note, scope: Scope, path: str, kind: str | None, data: dict[str, Any]) -> None:
        """What the request is, for its row: its kind, its route (a Gradio event by its API name), whether it is a
        job's (the job writes the row), the name a login tries; and for a Gradio event, the context its handler
        binds (services/log_context.py)."""
        clean = path.rstrip("/")
        note.kind = kind or ("admin" if clean.startswith("/api/admin") else "read" if note.logged else None)
        if kind == "login":
            note.user, note.logged = str(data.get("username", ""))[:255], True
            return
        if kind is None:
            if note.logged and scope["method"] != "GET":
                note.route = f"{scope['method']} {path}"
            return
        note.logged = True
        fn = self._event_of(clean, data)
        if fn is not None:
            note.route = f"/{fn.api_name}" if getattr(fn, "api_name", None) else path
            note.job = kind in ("image", "chat", "admin")  # their handler writes the row (an admin event: what it did)
            scope["state"][log_context.SCOPE_KEY] = {
                "request_id": note.request_id, "client": note.client, "route": note.route,
                "queued_at": note.started}
        elif kind in ("image", "chat") and any(path.startswith(d.prefix) for d in self.dialects):
            note.job = True  # /v1's and /sdapi/v1's jobs write their own rows (in this request's context), as above

    def _event_of(self, path: str, data: dict[str, Any]) -> Any:
        """The Gradio event a queue/join or /call runs, or None."""
        if path == f"{GRADIO}/queue/join":
            return self.blocks.fns.get(data.get("fn_index"))
        if path.startswith(CALL):
            name = _api_name(path)
            return next((f for f in self.blocks.fns.values() if f.api_name == name), None)
        return None

    def _login_key(self, scope: Scope, headers: dict[str, str], name: str) -> str:
        """Login attempts count per address and account: guessing one password is throttled, a shared address
        is not locked out, and the login form and Basic credentials share the count."""
        return f"ip:{self.auth.client_ip(scope, headers)}:login:{name}"

    def _count(self, kind: str, key: str, item: RateLimitItem | None = None) -> None:
        """Count one hit against `kind`'s limit (`item`, else the setting's) for `key`; TooMany when it is over."""
        item = item or self.limits[kind]
        if not self.limiter.limiter.hit(item, kind, key):
            reset, _ = self.limiter.limiter.get_window_stats(item, kind, key)
            raise TooMany(kind, item, max(1, math.ceil(reset - time.time())))

    async def _checked_body(self, path: str, body: bytes, content_type: str, scope: Scope,
                            receive: Receive) -> dict[str, Any]:
        """The fields of a queue/join, cancel or login body (a call's are checked, not returned), or Refused
        with what is wrong with it."""
        if path == "/login":
            return await _login_form(body, content_type, scope, receive)
        if path.startswith((CALL, *PREDICT)):
            data = self._check_call(path, body, content_type) if path.startswith(CALL) else _json_object(
                body, content_type)
            if not isinstance(data.get("session_hash"), str | None):
                raise Refused(422, f"session_hash must be a string, not {_json_type(data['session_hash'])}.")
            return data
        data = _json_object(body, content_type)
        for name, (expected, required) in JSON_FIELDS[path].items():
            value = data.get(name)
            if value is None:
                if required:
                    raise Refused(422, f"The request body needs {name} ({_TYPE_NAMES[expected]}).")
                continue
            # bool is an int to Python, not to JSON: `true` is no fn_index.
            if not isinstance(value, expected) or isinstance(value, bool):
                raise Refused(422, f"{name} must be {_TYPE_NAMES[expected]}, not {_json_type(value)}.")
            if isinstance(value, str) and len(value) > MAX_ID_CHARS:
                raise Refused(422, f"{name} is too long: at most {MAX_ID_CHARS} characters.")
        if path == f"{GRADIO}/queue/join" and data["fn_index"] not in self.blocks.fns:
            raise Refused(422, "fn_index is not an event of this app (see /config for the events).")
        self._check_files(data.get("data"))
        return data

    def _with_defaults(self, path: str, body: bytes, data: dict[str, Any]) -> bytes:
        """The body of a queue/join or positional /call whose values stop short of the event's inputs, completed with
        their defaults: parameters added later (all optional) leave the calls of older scripts working."""
        if path == f"{GRADIO}/queue/join":
            fn, holder = self.blocks.fns.get(data.get("fn_index")), data
        elif path.startswith(CALL) and not path.startswith(f"{CALL}v2/"):
            name = _api_name(path)
            fn = next((f for f in self.blocks.fns.values() if f.api_name == name), None)
            holder = json.loads(body)  # _check_call read it as a JSON object already
        else:
            return body
        values = holder.get("data")
        if fn is None or not isinstance(values, list) or len(values) >= len(fn.inputs):
            return body
        holder["data"] = [*values, *(getattr(c, "value", None) for c in fn.inputs[len(values):])]
        return json.dumps(holder).encode()

    def _check_files(self, value: Any, user: str | None = None) -> None:
        """Refused unless every file the values name ({"path": ...}) is one in Gradio's folder and, with accounts
        and a `user`, one Gradio handed to that user: Gradio copies (and hands on) a file named by path from anywhere
        on the server, such as another user's images or uploads."""
        for named in _named_files(value):
            real = judge_file(named, self.grants.root)
            if real is None:
                raise Refused(422, "A file in the request was not uploaded to this server: upload it first "
                                   "(in gradio_client, pass handle_file(path)).")
            if user is not None and self.auth.required and not (self.grants.allowed(user, real)
                                                                 or real in self._kept()):
                raise Refused(422, "A file in the request is not one you uploaded or were sent: upload it first "
                                   "(in gradio_client, pass handle_file(path)).")

    def _check_call(self, path: str, body: bytes, content_type: str) -> dict[str, Any]:
        """A /call to an endpoint of the public API, and for /call/v2 keyword arguments it takes (Refused
        otherwise: Gradio answers both with a 500); the fields of a positional call's body (for /call/v2, its
        arguments as `data`)."""
        if self._endpoints is None:  # the Blocks are complete before the first request
            info = self.blocks.get_api_info()
            self._endpoints = {name.lstrip("/"): e["parameters"] for name, e in info["named_endpoints"].items()}
        name = _api_name(path)
        if name not in self._endpoints:
            raise Refused(404, f"There is no API endpoint /{name}; the endpoints are listed at {GRADIO}/info.")
        if path.startswith(f"{CALL}v2/"):
            from gradio_client.utils import construct_args

            # Gradio's own route maps keywords to arguments with this function, and lets its errors be a 500.
            arguments = {k: v for k, v in _json_object(body, content_type).items() if k != "oauth_token"}
            self._check_files(arguments)
            try:
                construct_args(self._endpoints[name], (), arguments)
            except (TypeError, ValueError) as err:
                raise Refused(422, str(err).split(" Please click")[0]) from None
            return {"data": arguments}
        data = _json_object(body, content_type)
        self._check_files(data.get("data"))
        return data

    def _kind(self, path: str, method: str, data: dict[str, Any]) -> str | None:
        """Which limit a Gradio request counts against, or None for free ones (pages, assets, reads by GET)."""
        if method != "POST":
            return None
        clean = path.rstrip("/")
        if clean == "/login":
            return "login"
        if clean in (f"{GRADIO}/upload", f"{GRADIO}/component_server"):
            return "upload"  # a piece of the image editor's picture is an upload too
        if clean == f"{GRADIO}/cancel" and self._cancels_own_session(data):
            # Free: refused for the read limit, a Stop would keep its job on the GPU (that the event is the caller's
            # the guard checks next). A cancel that names nothing waiting or running is a read like any other.
            return None
        if clean in (f"{GRADIO}/cancel", f"{GRADIO}/reset"):
            return "read"
        if clean == f"{GRADIO}/queue/join" or clean.startswith(CALL):
            fn = self._event_of(clean, data)
            return KIND_BY_CONCURRENCY.get(getattr(fn, "concurrency_id", None), "read")
        return None  # REST routes under /api count against the read limit themselves (api/rest/common.py)

    def _cancels_own_session(self, data: dict[str, Any]) -> bool | None:
        """Whether a cancel's event waits or runs in the session the cancel names; None when no such event lives."""
        owner_session = gradio_internals.session_of_event(self.blocks, data.get("event_id"))
        return None if owner_session is None else owner_session == data.get("session_hash")

    def _may_cancel(self, data: dict[str, Any]) -> bool:
        """A Stop names the session its event belongs to (both the user's: the guard checked them)."""
        return self._cancels_own_session(data) is not False


class TooMany(Exception):
    """A hit over a limit: which one, and the seconds until it frees up."""

    def __init__(self, kind: str, item: RateLimitItem, retry: int) -> None:
        super().__init__(kind)
        self.kind, self.item, self.retry = kind, item, retry


# Gradio's routes that name a session, event or upload, or that hand out files: the gateway resolves their user.
RESOLVED = tuple(f"{GRADIO}/{route}" for route in (
    "cancel", "reset", "queue/", "call/", "run/", "api/", "heartbeat/", "stream/", "upload", "component_server",
    "deep_link"))
_NOUNS = {"image": "image jobs", "chat": "chat messages", "upload": "uploads", "login": "login attempts",
          "read": "requests"}
_TYPE_NAMES = {int: "an integer", str: "a string", list: "an array", dict: "an object"}


def _named_files(value: Any) -> list[str]:
    """The `path` of every file payload ({"path": ...}) in request values."""
    if isinstance(value, dict):
        named = [value["path"]] if isinstance(value.get("path"), str) else []
        return named + [p for item in value.values() for p in _named_files(item)]
    if isinstance(value, list):
        return [p for item in value for p in _named_files(item)]
    return []


def _api_name(path: str) -> str:
    """The endpoint of a /call/{api_name} or /call/v2/{api_name} path."""
    return path.removeprefix(CALL).removeprefix("v2/").split("/")[0]


class Refused(Exception):
    """A request the gateway answers itself: an HTTP status and the message that says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


REFUSALS: tuple[type[Exception], ...] = (Refused, NotYours, TooMany, ClaimsFull, *UNAVAILABLE)


def _refusal(err: Exception) -> tuple[int, str, dict[str, str]]:
    """The status, message and headers that answer one of REFUSALS."""
    if isinstance(err, Refused | NotYours):
        return err.status, err.message, {}
    if isinstance(err, TooMany):
        return 429, (f"Too many {_NOUNS[err.kind]}: the limit is {err.item}. Try again in {err.retry} s."), {
            "retry-after": str(err.retry)}
    if isinstance(err, ClaimsFull):
        return 503, TOO_MANY_SESSIONS, {"retry-after": "10"}
    # The replicas' shared state is out of reach: refuse rather than run unlimited or unchecked.
    return 503, UNAVAILABLE_MESSAGE, {"retry-after": "10"}


def _json_type(value: Any) -> str:
    """How JSON calls the type of a decoded value, for messages."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return _TYPE_NAMES.get(type(value), "null")


def _json_object(body: bytes, content_type: str) -> dict[str, Any]:
    """The body as a JSON object (parsed when FastAPI would parse it: no content type, or a JSON one)."""
    media = content_type.split(";")[0].strip().lower()
    if media and not (media == "application/json" or media.endswith("+json")):
        raise Refused(415, f"This route takes a JSON body (Content-Type: application/json), not {media}.")
    try:
        data = json.loads(body)
    except UnicodeDecodeError:
        raise Refused(400, "The request body is not valid JSON: it is not UTF-8 text.") from None
    except ValueError as err:
        raise Refused(400, f"The request body is not valid JSON: {err}.") from None
    if not isinstance(data, dict):
        raise Refused(422, f"The request body must be a JSON object, not {_json_type(data)}.")
    return data


async def _login_form(body: bytes, content_type: str, scope: Scope, receive: Receive) -> dict[str, Any]:
    """The username of a login form with exactly one username and one password (both text)."""
    from python_multipart.exceptions import MultipartParseError
    from starlette.exceptions import HTTPException
    from starlette.formparsers import MultiPartException
    from starlette.requests import Request

    media = content_type.split(";")[0].strip().lower()
    if media not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise Refused(415, "Log in with a form (application/x-www-form-urlencoded or multipart/form-data) "
                           "holding a username and a password.")
    try:
        form = await Request(scope, _replay(body, receive)).form(max_files=0, max_fields=MAX_LOGIN_FIELDS)
    except HTTPException as err:  # Starlette's form parser inside an app turns its MultiPartException into this
        raise Refused(400, f"The login form could not be read: {err.detail}") from None
    except (MultiPartException, MultipartParseError) as err:
        raise Refused(400, f"The login form could not be read: {err}") from None
    for name in ("username", "password"):
        values = form.getlist(name)
        if len(values) != 1 or not isinstance(values[0], str):
            raise Refused(422, f"The login form needs exactly one {name}, as text.")
    return {"username": form["username"]}


async def _read_body(receive: Receive, headers: dict[str, str]) -> bytes:
    """The whole request body, or Refused (413) as soon as it is known to be over MAX_BODY_BYTES."""
    too_large = Refused(413, f"The request body is too large: the limit for this route is "
                             f"{MAX_BODY_BYTES / 2**20:g} MiB ({MAX_BODY_BYTES} bytes).")
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Refused(400, "The client went away before its request body arrived.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise too_large
        chunks.append(chunk)
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


async def _reply(send: Send, status: int, message: str, headers: dict[str, str] | None = None,
                 shape: Callable[[int, str], bytes] | None = None) -> None:
    if shape is not None:  # another API's own error shape
        payload = shape(status, message)
    else:
        payload = json.dumps({"detail": message, "error": message}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})
