"""Gradio's internal routes, guarded: a byte cap on every request body, declared or streamed; the image editor's
upload route (component_server) served here, checked and bounded; and the POST routes the app never uses refused.

Gradio 6.31 serves these POST routes (gradio/routes.py), and Atelier answers each so:

- /login, queue/join, cancel, call/<name>, call/v2/<name>: 1 MiB; the gateway checks the fields and counts logins,
  jobs or reads.
- upload: the upload limit + 64 KiB for the form; counted as uploads; Gradio streams it to disk and applies the
  upload limit to each file too (max_file_size, which the browser also checks before it sends).
- component_server: the same cap; counted as uploads; served here, the image editor's accept_blobs only.
- reset (a no-op in Gradio 6 that its clients still call after a cancel): 1 MiB; the gateway checks its event_id;
  counted as reads.
- anything else under /gradio_api is refused with a 404 before a byte of its body is read: run/<name> and
  api/<name> (direct calls, which api_open=False refuses anyway), stream/<id> and stream/<id>/close (streaming
  inputs: the app has none), process_recording (recorded audio and video), run-history/*, vibe-*,
  undo-vibe-edit and profiling/*.

The REST routes under /api take small JSON bodies (ids, names, filters): 1 MiB at most; an account import
(POST /api/account/import) takes its archive up to ATELIER_ARCHIVE_MAX_BYTES, spooled to disk as it arrives. The
other APIs (OpenAI's /v1, AUTOMATIC1111's /sdapi/v1, MCP under /gradio_api/mcp: gateway Dialects) have a cap per
route, their own (base64 images are large), refused in each one's error shape; their bodies share an in-flight budget
of their own, room for two of their largest. Bodies read into memory (all but upload, component_server and the
import, spooled to disk as they arrive) also share an in-flight budget, so that many slow or concurrent bodies cannot
add up: past it the answer is a 503.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.formparsers import MultiPartException

from api import gradio_internals
from api.auth import USER_STATE_KEY, header_dict
from api.gateway import GRADIO, MAX_BODY_BYTES, Dialect, Refused, _reply
from api.ownership import SESSION, TOO_MANY_SESSIONS, NotYours, SessionGuard
from api.request_rows import refused_here
from contracts import InvalidRequest
from services.admission import ClaimsFull
from services.editor_blobs import MAX_LAYERS
from services.uploads import Uploads

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COMPONENT_SERVER = f"{GRADIO}/component_server"
UPLOAD = f"{GRADIO}/upload"
ACCOUNT_IMPORT = "/api/account/import"
# The body routes the app uses; any other POST (PUT, PATCH, DELETE) under /gradio_api is refused unread.
SERVED = {f"{GRADIO}/queue/join", f"{GRADIO}/cancel", f"{GRADIO}/reset", UPLOAD, COMPONENT_SERVER}
CALLS = f"{GRADIO}/call/"
# Methods whose requests carry no body the app reads.
BODILESS = {"GET", "HEAD", "OPTIONS"}
# Room for a multipart form's boundaries and part headers around its one file.
FORM_ENVELOPE = 64 * 1024
# Bodies held in memory at once, all requests together: 32 bodies at the 1 MiB cap. Legitimate ones are a few KB.
IN_FLIGHT_MAX_BYTES = 32 * MAX_BODY_BYTES
BUSY_MESSAGE = "Atelier is receiving too many requests at once. Try again in a few seconds."
# Names Gradio's JS client makes with Math.random().toString(36): an upload's progress stream (Gradio keeps one
# tracker per name) and the editor's id for one value. Anything longer or stranger is refused.
CLIENT_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
# The other form fields the editor sends.
PIECES = ("background", "layer", "composite")
MAX_FORM_FIELDS = 16
MAX_FIELD_BYTES = 1024
# Files in one upload request: Gradio's browser client sends one component's files together (one, in this app).
MAX_UPLOAD_FILES = 8


class _Tripped(MultiPartException):
    """Raised into the app from receive() once a body is over its cap or the in-flight budget. A MultiPartException
    because Gradio's upload parser removes its half-written temp files on that exception only."""

    def __init__(self, refusal: Refused) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


class _UploadParts:
    """Watches an upload's multipart body as it streams past to Gradio, keeping nothing: only file parts named
    "files", at most MAX_UPLOAD_FILES. Gradio answers a text part named "files" with a 500, and writes a file part
    of any other name to its upload folder and leaves it there."""

    def __init__(self, content_type: str) -> None:
        from python_multipart.multipart import MultipartParser, parse_options_header

        media, options = parse_options_header(content_type)
        if media != b"multipart/form-data" or not options.get(b"boundary"):
            raise Refused(415, "An upload is a multipart/form-data form of files named \"files\".")
        self.files = 0
        self.field, self.value = bytearray(), bytearray()  # the part header being read (python-multipart caps it)
        self.disposition = b""
        self.problem: Refused | None = None
        self.parser = MultipartParser(options[b"boundary"], {
            "on_header_field": lambda data, start, end: self.field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self.value.extend(data[start:end]),
            "on_header_end": self._header_end, "on_headers_finished": self._part})

    def feed(self, chunk: bytes) -> None:
        """Read the next bytes of the body; Refused when the form is not an upload's."""
        from python_multipart.exceptions import MultipartParseError

        try:
            self.parser.write(chunk)
        except MultipartParseError as err:
            raise Refused(400, f"The upload form could not be read: {err}") from None
        if self.problem is not None:
            raise self.problem

    def _header_end(self) -> None:
        if self.field.strip().lower() == b"content-disposition":
            self.disposition = bytes(self.value)
        self.field.clear()
        self.value.clear()

    def _part(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, options = parse_options_header(self.disposition)
        self.disposition = b""
        if options.get(b"name") != b"files" or b"filename" not in options:
            self.problem = Refused(422, "An upload holds only files, each a part named \"files\" with a filename.")
        self.files += 1
        if self.files > MAX_UPLOAD_FILES:
            self.problem = Refused(422, f"An upload holds {MAX_UPLOAD_FILES} files at most.")


class _Budget:
    """Bytes of request bodies held in memory now, across requests (one event loop: no lock needed)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, size: int) -> bool:
        if self.used + size > self.limit:
            return False
        self.used += size
        return True

    def give(self, size: int) -> None:
        self.used -= size


class _Guard:
    """One request's body, counted as the app reads it: over the cap (or the budget) the app's receive() raises and
    its own answer is dropped for ours."""

    def __init__(self, cap: Refused, limit: int, budget: _Budget | None, parts: _UploadParts | None = None) -> None:
        self.cap, self.limit, self.budget, self.parts = cap, limit, budget, parts
        self.received = self.held = 0
        self.refusal: Refused | None = None
        self.started = False

    def receive(self, receive: Receive) -> Receive:
        async def counted() -> dict[str, Any]:
            if self.refusal is not None:
                raise _Tripped(self.refusal)
            message = await receive()
            size = len(message.get("body", b"")) if message["type"] == "http.request" else 0
            self.received += size
            if self.received > self.limit:
                self.refusal = self.cap
            elif self.parts is not None and size:
                try:
                    self.parts.feed(message["body"])
                except Refused as refused:
                    self.refusal = refused
            elif self.budget is not None and size:
                if not self.budget.take(size):
                    self.refusal = Refused(503, BUSY_MESSAGE)
                else:
                    self.held += size
            if self.refusal is not None:
                raise _Tripped(self.refusal)
            return message

        return counted

    def send(self, send: Send) -> Send:
        async def answered(message: dict[str, Any]) -> None:
            if self.refusal is not None and not self.started:
                return  # the app's own answer to a body it could not finish reading: ours goes instead
            self.started = self.started or message["type"] == "http.response.start"
            await send(message)

        return answered

    def release(self) -> None:
        if self.budget is not None:
            self.budget.give(self.held)
            self.held = 0


class BodyLimits:
    """ASGI middleware, outermost: refuses unused body routes, caps every body, bounds the bodies held at once."""

    def __init__(self, app: ASGIApp, *, upload_max_bytes: int, in_flight_max_bytes: int = IN_FLIGHT_MAX_BYTES,
                 dialects: Sequence[Dialect] = (), archive_max_bytes: int | None = None) -> None:
        self.app = app
        self.file_limit = upload_max_bytes + FORM_ENVELOPE
        self.file_cap = Refused(413, f"The upload is too large: a file may be {_size(upload_max_bytes)} at most.")
        self.archive_limit = (archive_max_bytes or upload_max_bytes) + FORM_ENVELOPE
        self.archive_cap = Refused(413, f"The archive is too large: this server takes "
                                        f"{_size(self.archive_limit - FORM_ENVELOPE)} at most "
                                        "(ATELIER_ARCHIVE_MAX_BYTES).")
        self.body_cap = Refused(413, f"The request body is too large: the limit for this route is "
                                     f"{_size(MAX_BODY_BYTES)}.")
        self.budget = _Budget(in_flight_max_bytes)
        self.dialects = list(dialects)
        # The other APIs carry images in their bodies: a budget of their own, room for two of their largest bodies.
        self.dialect_budget = _Budget(max(in_flight_max_bytes, 2 * max((d.max_body for d in dialects), default=0)))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse or cap the request, then hand it on with its body counted."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        dialect = self._dialect(scope["path"])
        shape = dialect.refusal if dialect is not None else None  # another API's refusals in its own shape
        try:
            guard = self._guard(scope, dialect)
        except Refused as refused:
            refused_here(scope)
            await _reply(send, refused.status, refused.message, shape=shape)
            return
        try:
            await self.app(scope, guard.receive(receive), guard.send(send))
        except Exception:
            if guard.refusal is None:
                raise
        finally:
            guard.release()
        if guard.refusal is not None:
            # 503: the bodies held at once are at their bound (the server is busy); else a cap for this body.
            refused_here(scope, "busy" if guard.refusal.status == 503 else "")
        if guard.refusal is not None and not guard.started:
            retry = {"retry-after": "5"} if guard.refusal.status == 503 else None
            await _reply(send, guard.refusal.status, guard.refusal.message, retry, shape)

    def _dialect(self, path: str) -> Dialect | None:
        return next((d for d in self.dialects if path.startswith(d.prefix.rstrip("/"))), None)

    def _guard(self, scope: Scope, dialect: Dialect | None) -> _Guard:
        """The request's guard; Refused, before a byte of the body is read, for a route the app does not serve, a
        declared length over the cap, or an upload Gradio would mishandle (its form type, its progress name)."""
        path, method = scope["path"].rstrip("/"), scope["method"]
        headers = header_dict(scope)
        if method not in BODILESS and path.startswith(f"{GRADIO}/") and path not in SERVED \
                and not path.startswith(CALLS) and dialect is None:
            raise Refused(404, f"Atelier does not serve {method} {path}.")
        spooled = path in (UPLOAD, COMPONENT_SERVER, ACCOUNT_IMPORT)  # their files are spooled to disk
        limit, cap = (self.file_limit, self.file_cap) if spooled else (MAX_BODY_BYTES, self.body_cap)
        if path == ACCOUNT_IMPORT:
            limit, cap = self.archive_limit, self.archive_cap
        if dialect is not None:
            limit = dialect.body_limit(path)
            cap = Refused(413, f"The request body is too large: the limit for this route is {_size(limit)}.")
            self._declared(headers, limit, cap)
            return _Guard(cap, limit, self.dialect_budget)
        self._declared(headers, limit, cap)
        parts = None
        if path == UPLOAD and method == "POST":
            from urllib.parse import parse_qs

            query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
            names = query.get("upload_id", [])
            if len(names) > 1 or (names and not CLIENT_NAME.fullmatch(names[0])):
                raise Refused(422, "upload_id must be one name of 1 to 64 letters, digits, - or _.")
            parts = _UploadParts(headers.get("content-type", ""))
        return _Guard(cap, limit, None if spooled else self.budget, parts)

    @staticmethod
    def _declared(headers: dict[str, str], limit: int, cap: Refused) -> None:
        """Refuse a body whose declared length is over `limit` before a byte of it is read."""
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise cap


def _size(limit: int) -> str:
    return f"{limit / 2**20:g} MiB ({limit} bytes)"


class EditorBlobRoute:
    """ASGI middleware inside the gateway (which resolved the user and counted the request as an upload): serves
    /gradio_api/component_server for the image editor's accept_blobs, the only component server function the UI
    uses, into services/editor_blobs.py. Gradio's own route keeps the pieces for ever, grows a layer list to any
    index the client names, makes a session state (~0.4 MiB) for any session hash, and answers an unknown component,
    a missing field or a non-numeric index with a 500."""

    def __init__(self, app: ASGIApp, *, blocks: Any, uploads: Uploads,
                 guard: SessionGuard | None = None) -> None:
        self.app = app
        self.uploads = uploads
        self.editors = gradio_internals.editor_ids(blocks)
        # The pieces are kept per user whatever the session, but a request naming another user's session is still
        # refused (403), as on every route that names one.
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer the editor's uploads here; everything else passes on."""
        if scope["type"] != "http" or scope["path"].rstrip("/") != COMPONENT_SERVER or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:
            await self._accept(scope, receive)
        except Refused as refused:
            await _reply(send, refused.status, refused.message)
            return
        body = b"null"  # what Gradio's accept_blobs answers
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"4")]})
        await send({"type": "http.response.body", "body": body})

    async def _accept(self, scope: Scope, receive: Receive) -> None:
        """Read, check and keep one piece of an editor value; Refused with what is wrong."""
        owner = scope.get("state", {}).get(USER_STATE_KEY)
        if owner is None:
            raise Refused(401, "Log in first.")
        form = await _form(scope, receive)
        try:
            session = form.get("session_hash")
            if self.guard is not None and isinstance(session, str) and session:
                self._check_session(session, owner)
            blob_id, kind, index, upload = self._piece(form)
            if kind == "composite":
                return  # the flattened picture: the inpaint tab reads the background and the strokes instead
            field = "background" if kind == "background" else f"layer {index}"
            # Read from the spooled file on the event loop, on purpose: a local read of at most the upload limit
            # (milliseconds), so one piece at a time is in memory besides those kept, and always in the main
            # allocator arena (read in worker threads, freed pieces stayed mapped in their threads' arenas).
            blob = upload.file.read()
            try:
                self.uploads.check(blob, field)
            except InvalidRequest as err:
                self.uploads.blobs.refuse(owner, blob_id, str(err))
                raise Refused(422, str(err)) from None
            if problem := self.uploads.blobs.put(owner, blob_id, kind, index, blob):
                raise Refused(422, problem)  # too much for one submission, or a piece of it refused before
        finally:
            await form.close()

    def _check_session(self, session: str, owner: str) -> None:
        """Refused (403) when the session the piece names is another user's."""
        try:
            self.guard.check([(SESSION, session)], owner)
        except NotYours as refused:
            raise Refused(refused.status, refused.message) from None
        except ClaimsFull:
            raise Refused(503, TOO_MANY_SESSIONS) from None

    def _piece(self, form: Any) -> tuple[str, str, int | None, Any]:
        """(id, kind, layer index, the file) of an accept_blobs form, or Refused naming the field at fault."""
        from starlette.datastructures import UploadFile

        def text(name: str, required: bool = True) -> str:
            values = form.getlist(name)
            if len(values) > 1 or (values and not isinstance(values[0], str)):
                raise Refused(422, f"{name} must be given once, as text.")
            if required and not values:
                raise Refused(422, f"The form needs {name}.")
            return values[0] if values else ""

        component = text("component_id")
        if not component.isdigit() or int(component) not in self.editors:
            raise Refused(404, f"There is no image editor with component_id {component[:20]!r}.")
        if (name := text("fn_name")) != "accept_blobs":
            raise Refused(404, f"The image editor serves accept_blobs only, not {name[:40]!r}.")
        blob_id, kind, index = text("id"), text("type"), text("index", required=False)
        if not CLIENT_NAME.fullmatch(blob_id):
            raise Refused(422, "id must be 1 to 64 letters, digits, - or _.")
        if kind not in PIECES:
            raise Refused(422, f"type must be one of {', '.join(PIECES)}.")
        if kind == "layer" and not (index.isascii() and index.isdigit() and len(index) <= 3
                                    and int(index) < MAX_LAYERS):
            raise Refused(422, f"A layer's index must be a whole number from 0 to {MAX_LAYERS - 1}.")
        files = form.getlist("file")
        if len(files) != 1 or not isinstance(files[0], UploadFile):
            raise Refused(422, "The form needs exactly one file, the piece itself.")
        return blob_id, kind, int(index) if kind == "layer" else None, files[0]


async def _form(scope: Scope, receive: Receive) -> Any:
    """The multipart form (file parts spooled to disk past 1 MiB), or Refused when it is not one or is malformed."""
    from python_multipart.exceptions import MultipartParseError
    from starlette.exceptions import HTTPException
    from starlette.requests import Request

    media = header_dict(scope).get("content-type", "").split(";")[0].strip().lower()
    if media != "multipart/form-data":
        raise Refused(415, "component_server takes the image editor's pieces as multipart/form-data; no other "
                           "component server function is served.")
    try:
        return await Request(scope, receive).form(max_files=1, max_fields=MAX_FORM_FIELDS,
                                                  max_part_size=MAX_FIELD_BYTES)
    except HTTPException as err:  # Starlette's parser inside an app turns its MultiPartException into this
        raise Refused(400, f"The form could not be read: {err.detail}") from None
    except (MultiPartException, MultipartParseError) as err:
        raise Refused(400, f"The form could not be read: {err}") from None
