"""Per-session memory and cached files, bounded for a server that runs for weeks.

Gradio keeps a SessionState for each session hash it has seen, up to 10,000 of them (a copy of every component's
config, ~370 KiB for Atelier, until gradio_internals.lean_sessions kept only what the session changed), and marks
it closed when the session's heartbeat goes but never frees it; its file cache keeps every preview and result
until the server stops. Each script run and each browser tab is a new
session, so both grow without end. The janitor forgets a session once it has been quiet for a grace period
(no heartbeat open, no job queued or running), and sweeps old cached files that no held session shows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio

from api import gradio_internals
from services.tempfiles import SweepResult, sweep

log = logging.getLogger("atelier.sessions")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HEARTBEAT = "/gradio_api/heartbeat/"


class SessionJanitor:
    """Knows which Gradio sessions are live, forgets quiet ones, sweeps cached files nobody holds."""

    def __init__(self, blocks: Any, *, grace_s: float, temp_dir: Path, temp_max_age_s: float,
                 clock: Callable[[], float] = time.time, cache_dirs: Sequence[Path] = ()) -> None:
        self.blocks = blocks
        self.grace_s = grace_s
        self.temp_dir = temp_dir
        self.cache_dirs = cache_dirs  # local copies of S3 images: Gradio copies them, so only their age counts
        self.temp_max_age_s = temp_max_age_s
        self.clock = clock
        self.owner: OrderedDict[str, str] = OrderedDict()  # session hash -> user who joined with it (Gateway)
        self.heartbeats: Counter[str] = Counter()  # open heartbeat connections per session
        self.quiet_since: dict[str, float] = {}  # when a session's last heartbeat closed, or it was first seen

    # --- liveness ------------------------------------------------------------------------------
    def heartbeat_opened(self, session: str) -> None:
        """A tab or client holds the session open."""
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
        """Forget every session quiet for the grace period: its Gradio state, message queue and owner."""
        now = self.clock()
        known = gradio_internals.known_sessions(self.blocks) | set(self.owner) | set(self.quiet_since)
        dropped = [s for s in known if not self.live(s) and self._quiet_for(s, now) >= self.grace_s]
        for session in dropped:
            gradio_internals.forget_session(self.blocks, session)
            self.owner.pop(session, None)
            self.quiet_since.pop(session, None)
        return dropped

    # --- files ---------------------------------------------------------------------------------
    def files_in_use(self) -> set[str]:
        """Cached files that a held session shows (its last outputs) or that Gradio keeps for good."""
        paths = {p for value in gradio_internals.held_values(self.blocks) for p in _file_paths(value)}
        return {str(Path(p).resolve()) for p in paths}

    def forget_files(self, removed: list[str]) -> None:
        """Drop swept files from Gradio's own lists of the files it made, which otherwise only grow."""
        gradio_internals.forget_files(self.blocks, set(removed))

    async def sweep_once(self) -> SweepResult:
        """One round: forget quiet sessions, then delete old cached files that no held session shows."""
        dropped = self.prune_sessions()
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


class HeartbeatWatch:
    """ASGI middleware: tells the janitor when a session's heartbeat stream opens and closes."""

    def __init__(self, app: ASGIApp, *, janitor: SessionJanitor) -> None:
        self.app = app
        self.janitor = janitor

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Count the heartbeat while Gradio serves it; everything else passes untouched."""
        path = scope.get("path", "") if scope["type"] == "http" else ""
        session = path.removeprefix(HEARTBEAT).strip("/") if path.startswith(HEARTBEAT) else ""
        if not session:
            await self.app(scope, receive, send)
            return
        self.janitor.heartbeat_opened(session)
        try:
            await self.app(scope, receive, send)
        finally:
            self.janitor.heartbeat_closed(session)
