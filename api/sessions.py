"""Per-session memory and cached files, bounded for a server that runs for weeks.

Gradio keeps a SessionState for each session hash it has seen, up to 10,000 of them (a copy of every component's
config, ~370 KiB for Atelier, until gradio_internals.lean_sessions kept only what the session changed), and marks
it closed when the session's heartbeat goes but never frees it; its file cache keeps every preview and result
until the server stops. Each script run and each browser tab is a new
session, so both grow without end. The janitor forgets a session once it has been quiet for a grace period
(no heartbeat or event stream open, no job queued or running), sweeps old cached files that no held session
shows, and renews the claims (storage.shared_state.Claims) of every session and event Gradio still holds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException
from starlette.routing import get_route_path

from api import gradio_internals
from api.ownership import SESSION, FileGrants
from services.admission import UNAVAILABLE, Claims
from services.tempfiles import SweepResult, sweep

log = logging.getLogger("atelier.sessions")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HEARTBEAT = "/gradio_api/heartbeat/"
QUEUE_DATA = "/gradio_api/queue/data"
CALL = "/gradio_api/call/"


class SessionJanitor:
    """Knows which Gradio sessions are live, forgets quiet ones, sweeps cached files nobody holds."""

    def __init__(self, blocks: Any, *, grace_s: float, temp_dir: Path, temp_max_age_s: float,
                 clock: Callable[[], float] = time.time, cache_dirs: Sequence[Path] = (),
                 claims: Claims | None = None, grants: FileGrants | None = None) -> None:
        self.blocks = blocks
        self.grace_s = grace_s
        self.temp_dir = temp_dir
        self.cache_dirs = cache_dirs  # local copies of S3 images: Gradio copies them, so only their age counts
        self.temp_max_age_s = temp_max_age_s
        self.clock = clock
        self.claims = claims  # who owns each session and event (the gateway's): renewed while Gradio holds them
        self.grants = grants  # which users may fetch each cached file (the gateway's): swept files' grants go
        self.heartbeats: Counter[str] = Counter()  # open heartbeat and event-stream connections per session
        self.quiet_since: dict[str, float] = {}  # when a session's last heartbeat closed, or it was first seen

    # --- liveness ------------------------------------------------------------------------------
    def heartbeat_opened(self, session: str) -> None:
        """A tab or client holds the session open (its heartbeat, or a stream of its events)."""
        self.heartbeats[session] += 1
        self.quiet_since.pop(session, None)

    def heartbeat_closed(self, session: str) -> None:
        """One of the session's heartbeats went away."""
        self.heartbeats[session] -= 1
        if self.heartbeats[session] <= 0:
            del self.heartbeats[session]
            self.quiet_since[session] = self.clock()

    def live(self, session: str) -> bool:
        """A heartbeat is open, or a job of the session waits or runs."""
        return self.heartbeats.get(session, 0) > 0 or gradio_internals.session_has_jobs(self.blocks, session)

    def _quiet_for(self, session: str, now: float) -> float:
        """Seconds since the session was last used or last held open."""
        used = gradio_internals.session_last_used(self.blocks, session)
        marks = [t for t in (self.quiet_since.get(session), used) if t is not None]
        if not marks:
            self.quiet_since[session] = now  # first seen now: the grace starts here
            return 0.0
        return now - max(marks)

    # --- forgetting ----------------------------------------------------------------------------
    def prune_sessions(self) -> list[str]:
        """Forget every session quiet for the grace period: its Gradio state and message queue (its claim lapses
        on its own, no longer renewed)."""
        now = self.clock()
        known = gradio_internals.known_sessions(self.blocks) | set(self.quiet_since)
        dropped = [s for s in known if not self.live(s) and self._quiet_for(s, now) >= self.grace_s]
        for session in dropped:
            gradio_internals.forget_session(self.blocks, session)
            self.quiet_since.pop(session, None)
        return dropped

    def held(self) -> set[str]:
        """The session hashes and event ids this replica holds: Gradio's, and those with a stream open."""
        return gradio_internals.held_ids(self.blocks) | set(self.heartbeats)

    async def renew_claims(self) -> None:
        """Keep the claims on everything this replica holds from lapsing (a Redis round trip, off the loop)."""
        if self.claims is None:
            return
        keys = {f"{SESSION}:{key}" for key in self.held()}
        try:
            await anyio.to_thread.run_sync(self.claims.renew, keys)
        except UNAVAILABLE:  # the file sweep still runs; the next round renews (claims outlive two rounds)
            log.warning("Redis is unreachable: the claims of %d held sessions were not renewed", len(keys))

    # --- files ---------------------------------------------------------------------------------
    def files_in_use(self) -> set[str]:
        """Cached files that a held session shows (its last outputs) or that Gradio keeps for good."""
        paths = {p for value in gradio_internals.held_values(self.blocks) for p in _file_paths(value)}
        return {str(Path(p).resolve()) for p in paths}

    def forget_files(self, removed: list[str]) -> None:
        """Drop swept files from Gradio's own lists of the files it made (which otherwise only grow) and their
        grants."""
        gradio_internals.forget_files(self.blocks, set(removed))
        if self.grants is not None:
            self.grants.forget(removed)

    async def sweep_once(self) -> SweepResult:
        """One round: forget quiet sessions, renew the claims of the others, then delete old cached files that no
        held session shows."""
        dropped = self.prune_sessions()
        await self.renew_claims()
        keep = self.files_in_use()
        result = await anyio.to_thread.run_sync(sweep, self.temp_dir, self.temp_max_age_s, keep)
        for folder in self.cache_dirs:
            await anyio.to_thread.run_sync(sweep, folder, self.temp_max_age_s)
        self.forget_files(result.removed)
        trim_heap()
        if dropped or result.removed:
            log.info("forgot %d quiet sessions (%d held); removed %d cached files, kept %d in use",
                     len(dropped), len(gradio_internals.known_sessions(self.blocks)), len(result.removed),
                     result.kept_in_use)
        return result

    async def run(self, every_s: float) -> None:
        """Sweep every `every_s` seconds until cancelled; a failed round is logged and the next one runs."""
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.sweep_once()
            except Exception:
                log.exception("session and temp-file sweep failed; retrying in %.0f s", every_s)


def trim_heap() -> bool:
    """Hand free heap memory back to the OS (glibc's malloc_trim); False where the C library has none.

    Each job runs in a thread of its own, and glibc gives threads their own malloc arenas; memory freed there
    stays mapped, fragmented, so RSS crept up by about 0.05 MiB a job in bench/soak.py although Python freed
    everything. Trimming after each sweep returns those pages.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        trim = libc.malloc_trim if libc is not None else None
    except (OSError, AttributeError):  # musl, macOS: no malloc_trim
        return False
    if trim is None:
        return False
    trim(0)
    return True


def _file_paths(value: Any) -> Iterator[str]:
    """Every `path` of a file payload ({"path": ..., ...}) anywhere in a component's config or value."""
    if isinstance(value, dict):
        if isinstance(path := value.get("path"), str):
            yield path
        for item in value.values():
            yield from _file_paths(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _file_paths(item)


class StreamWatch:
    """ASGI middleware: tells the janitor when a session's heartbeat or event stream opens and closes (a session
    with a stream open is in use), and ends such a stream quietly when Gradio's route fails inside it."""

    def __init__(self, app: ASGIApp, *, janitor: SessionJanitor) -> None:
        self.app = app
        self.janitor = janitor

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Count the stream while Gradio serves it; everything else passes untouched."""
        session = self._session(scope) if scope["type"] == "http" and scope.get("method") == "GET" else ""
        if not session:
            await self.app(scope, receive, send)
            return
        self.janitor.heartbeat_opened(session)
        state = {"started": False, "ended": False}

        async def tracked(message: dict[str, Any]) -> None:
            state["started"] |= message["type"] == "http.response.start"
            state["ended"] |= message["type"] == "http.response.body" and not message.get("more_body")
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except RuntimeError as err:
            # Gradio's stream raises an HTTPException once its session is gone (never known, or forgotten
            # while the stream was open), after the stream began: Starlette can no longer answer it and says
            # "response already started". The stream already told the client (session_not_found): end it.
            if not (state["started"] and isinstance(err.__cause__, HTTPException)):
                raise
            log.info("the stream of session %s ended: %s", session, err.__cause__.detail)
            if not state["ended"]:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self.janitor.heartbeat_closed(session)

    def _session(self, scope: Scope) -> str:
        """The session a heartbeat, a queue/data stream or a /call result stream belongs to ('' for other routes)."""
        path = get_route_path(scope)
        if path.startswith(HEARTBEAT):
            return path.removeprefix(HEARTBEAT).strip("/")
        if path.rstrip("/") == QUEUE_DATA:
            return QueryParams(scope.get("query_string", b"").decode("latin-1")).get("session_hash") or ""
        if path.startswith(CALL):
            parts = path.removeprefix(CALL).strip("/").split("/")
            event = parts[2] if parts[0] == "v2" and len(parts) >= 3 else parts[1] if len(parts) >= 2 else ""
            return gradio_internals.session_of_call(self.janitor.blocks, event) if event else ""
        return ""
