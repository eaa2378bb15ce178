"""Who may use what Gradio serves: the sessions, events and uploads a request names, and the files it fetches.

A session hash, an event id or an upload id belongs to the user who first used it (storage.shared_state.Claims,
shared by every replica on Redis); a request naming one that is someone else's is refused. A file in Gradio's
folder is served only to the users Gradio handed it to: the gateway reads Gradio's answers (the upload route's
paths, the results and previews in event streams) and grants each path it finds to the user it goes to, before it
goes. The file route is judged on the very string Gradio's route gets (the request path as the ASGI server
decoded it once, made absolute as Gradio does), so that the check and the server never disagree about a file.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from typing import Any

from starlette.datastructures import QueryParams
from starlette.routing import get_route_path

from api import gradio_internals
from services.admission import Claims, ClaimsFull

Send = Callable[[dict[str, Any]], Awaitable[None]]

GRADIO = "/gradio_api"
FILE_ROUTES = (f"{GRADIO}/file=", f"{GRADIO}/file/")
SESSION, UPLOAD = "session", "upload"
# Files granted at most (each a path and its users, ~0.3 KiB): the oldest grant goes first, which only refuses.
MAX_GRANTS = 100_000
# Gradio's answers read for file paths: a JSON answer is held until read whole, an event stream line by line, up
# to this many bytes (Atelier's answers are a few KiB; paths past the cap are simply not granted, so refused).
MAX_READ_BYTES = 8 * 1024 * 1024
# The user a component_server request came from, while Gradio's route looks up the session's state.
REQUEST_USER: ContextVar[str | None] = ContextVar("atelier_request_user")
_NOBODY_SET = object()
NOT_YOURS = {SESSION: "This session or job belongs to another user.", UPLOAD: "This upload belongs to another user."}


class NotYours(Exception):
    """A request that names a session, event or upload of another user (or of anyone, asked anonymously)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class SessionGuard:
    """Judges the sessions, events and uploads a request names: each is the first user's to use it. Without
    accounts (`required` False) everything is the one user's, as before."""

    def __init__(self, claims: Claims, blocks: Any, required: bool) -> None:
        self.claims = claims
        self.blocks = blocks
        self.required = required

    def check(self, named: list[tuple[str, str]], user: str | None) -> None:
        """Claim each id for `user` (first use wins), or NotYours: 403 for another user's, and for an anonymous
        request 403 when the id is someone's, else 401 (log in first). ClaimsFull and Redis errors pass on."""
        if not self.required:
            return
        for kind, ident in named:
            key = f"{kind}:{ident}"
            if user is None:
                if self.claims.owner(key) is not None:
                    raise NotYours(403, NOT_YOURS[kind])
                raise NotYours(401, "Log in first: this route acts on a session of a logged-in user.")
            # Something Gradio holds that nobody claimed (a claim lapsed, Redis was emptied) is nobody's to take.
            held = kind == SESSION and gradio_internals.holds(self.blocks, ident)
            if self.claims.claim(key, user, create=not held) != user:
                raise NotYours(403, NOT_YOURS[kind])

    def check_state(self, session: str) -> None:
        """For guard_session_state: the session whose state a component_server request reaches must be its user's
        (HTTPException otherwise); outside such a request nothing is checked."""
        user = REQUEST_USER.get(_NOBODY_SET)  # type: ignore[arg-type]
        if user is _NOBODY_SET:
            return
        from fastapi import HTTPException

        try:
            self.check([(SESSION, session)], user)
        except NotYours as refused:
            raise HTTPException(refused.status, refused.message) from None
        except ClaimsFull:
            raise HTTPException(503, TOO_MANY_SESSIONS, headers={"retry-after": "10"}) from None

    def mint(self, user: str, answer: Any) -> None:
        """A join's or call's answer names the event it started: the event is its user's from the start."""
        if self.required and isinstance(answer, dict) and isinstance(event := answer.get("event_id"), str):
            self.claims.claim(f"{SESSION}:{event}", user)


TOO_MANY_SESSIONS = "Atelier holds too many sessions right now. Try again shortly."


def named_ids(path: str, method: str, query_string: bytes, data: dict[str, Any]) -> list[tuple[str, str]]:
    """The (kind, id) pairs a Gradio request names, where Gradio's route reads them: its path, query or body
    (`data`, the JSON body the gateway read). Each route of Gradio 6.31 that names a session, event or upload is
    here; component_server is checked where Gradio reads the session (guard_session_state)."""
    if not path.startswith(f"{GRADIO}/"):
        return []
    route = path.removeprefix(GRADIO).rstrip("/")
    parts = route.strip("/").split("/")
    head = parts[0]
    if method == "POST":
        if route in ("/queue/join", "/cancel", "/reset") or head in ("call", "run", "api"):
            # queue/join, run and api take an event_id too, which Gradio replaces with the one it mints.
            fields = ("session_hash", "event_id") if route in ("/cancel", "/reset") else ("session_hash",)
            return [(SESSION, data[name]) for name in fields if isinstance(data.get(name), str)]
        if head == "stream" and len(parts) >= 2:  # /stream/{event_id} and /stream/{event_id}/close
            return [(SESSION, parts[1])]
        if route == "/upload":
            return _query_ids(query_string, "upload_id", UPLOAD)
        return []
    if route == "/queue/data" or route == "/deep_link":
        return _query_ids(query_string, "session_hash", SESSION)
    if route == "/upload_progress":
        return _query_ids(query_string, "upload_id", UPLOAD)
    if head == "heartbeat" and len(parts) >= 2:
        return [(SESSION, parts[1])]
    if head == "call" and len(parts) >= 3:  # /call/{api_name}/{event_id}, /call/v2/{api_name}/{event_id}
        return [(SESSION, parts[3] if parts[1] == "v2" and len(parts) >= 4 else parts[2])]
    if head == "stream" and len(parts) >= 2:  # /stream/{session_hash}/{run}/{component_id}/...
        return [(SESSION, parts[1])]
    return []


def _query_ids(query_string: bytes, name: str, kind: str) -> list[tuple[str, str]]:
    """The id a query parameter names, empty included (FastAPI takes the last of repeated ones: so does this)."""
    value = QueryParams(query_string.decode("latin-1")).get(name)
    return [(kind, value)] if value is not None else []


def gradio_file(scope: dict[str, Any]) -> str | None:
    """The path Gradio's file route (`file={path}`, `file/{path}`) gets from this request, or None when the
    request is for another route: the route's own view (the path below the mount, as decoded once)."""
    route = get_route_path(scope)
    for prefix in FILE_ROUTES:
        if route.startswith(prefix):
            return route[len(prefix):]
    return None


def judge_file(target: str, root: str) -> str | None:
    """The real file (symlinks followed) that Gradio would open for `target`, when it lies inside `root` (a real
    path); None otherwise: a URL (which Gradio would fetch), a path outside, an unreadable name."""
    if "://" in target or target.startswith("//"):
        return None
    try:
        # Gradio makes the path absolute (os.path.abspath: `..` removed by name) and opens that, following links.
        real = os.path.realpath(os.path.abspath(target))
    except (OSError, ValueError):
        return None
    return real if real.startswith(root.rstrip(os.sep) + os.sep) else None


class FileGrants:
    """Which users Gradio handed each file in its folder to (by real path); the oldest grants go past
    MAX_GRANTS, and swept files' grants go with them."""

    def __init__(self, folder: str, max_entries: int = MAX_GRANTS) -> None:
        self.root = os.path.realpath(folder)
        # Gradio hands out paths under its folder as named (a symlink, such as macOS's /tmp, stays in them).
        self.prefixes = tuple({os.path.abspath(folder) + os.sep, self.root + os.sep})
        self.max_entries = max_entries
        self._users: OrderedDict[str, set[str]] = OrderedDict()

    def grant(self, user: str, value: Any) -> None:
        """Grant `user` every file of Gradio's folder that `value` (a decoded JSON answer) names."""
        for text in _strings(value):
            if text.startswith(self.prefixes) and (real := judge_file(text, self.root)):
                self._users.setdefault(real, set()).add(user)
                self._users.move_to_end(real)
        while len(self._users) > self.max_entries:
            self._users.popitem(last=False)

    def allowed(self, user: str, real: str) -> bool:
        """Whether `real` (a path from judge_file) was handed to `user`."""
        return user in self._users.get(real, ())

    def forget(self, paths: list[str]) -> None:
        """Drop the grants of deleted files."""
        for path in paths:
            self._users.pop(os.path.realpath(path), None)


def _strings(value: Any) -> Iterator[str]:
    """Every string in a decoded JSON value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def read_replies(send: Send, inspect: Callable[[Any], None], *, whole: bool) -> Send:
    """`send`, with each JSON value of the answer passed to `inspect` before the client gets it: a whole JSON
    answer (`whole`) is held until complete; an event stream passes on line by line after its `data:` lines."""
    held: list[dict[str, Any]] = []
    size = 0
    pending = b""

    async def watched(message: dict[str, Any]) -> None:
        nonlocal size, pending
        if message["type"] not in ("http.response.start", "http.response.body"):
            await send(message)
            return
        if whole:
            held.append(message)
            size += len(message.get("body", b""))
            if message["type"] == "http.response.start" or (message.get("more_body") and size <= MAX_READ_BYTES):
                return
            if size <= MAX_READ_BYTES:
                _inspect(b"".join(m.get("body", b"") for m in held[1:]), inspect)
            for item in held:
                await send(item)
            held.clear()
            return
        if message["type"] == "http.response.body" and len(pending) <= MAX_READ_BYTES:
            *lines, pending = (pending + message.get("body", b"")).split(b"\n")
            for line in lines:
                if line.startswith(b"data:"):
                    _inspect(line[5:], inspect)
        await send(message)

    return watched


def _inspect(raw: bytes, inspect: Callable[[Any], None]) -> None:
    try:
        value = json.loads(raw)
    except ValueError:  # not JSON (a plain-text error): nothing to grant
        return
    inspect(value)
