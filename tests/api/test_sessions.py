"""The session janitor against a real (small) Gradio Blocks: which sessions it forgets, which files it keeps, which
claims it renews; the stream watch that tells it which sessions have a stream open."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import gradio as gr
import pytest
from gradio.routes import App

from api.ownership import FileGrants
from api.sessions import SessionJanitor, StreamWatch
from storage.shared_state import Claims

GRACE = 60.0


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def blocks() -> gr.Blocks:
    with gr.Blocks() as demo:
        gr.Textbox()
        gr.Image(elem_id="result")
        gr.State(None)
    demo.queue()
    App.create_app(demo)  # gives the Blocks its state_holder, as mounting does
    return demo


@pytest.fixture
def clock() -> Clock:
    return Clock()


def janitor_for(blocks: gr.Blocks, clock: Clock, temp_dir: Path, max_age: float = 3600) -> SessionJanitor:
    return SessionJanitor(blocks, grace_s=GRACE, temp_dir=temp_dir, temp_max_age_s=max_age, clock=clock,
                          claims=Claims(ttl_s=3 * GRACE, clock=clock), grants=FileGrants(str(temp_dir)))


def use(blocks: gr.Blocks, session: str, clock: Clock) -> None:
    """What a request of `session` does to Gradio's state holder, at the test clock's time."""
    from datetime import datetime

    blocks.state_holder[session]  # creates the SessionState, as a request does
    blocks.state_holder.time_last_used[session] = datetime.fromtimestamp(clock.now)


def image_id(blocks: gr.Blocks) -> int:
    return next(b._id for b in blocks.blocks.values() if getattr(b, "elem_id", None) == "result")


def test_a_closed_session_is_forgotten_after_the_grace_with_its_queue_entries(
        blocks: gr.Blocks, clock: Clock, tmp_path: Path) -> None:
    janitor = janitor_for(blocks, clock, tmp_path)
    janitor.heartbeat_opened("tab")
    use(blocks, "tab", clock)
    blocks._queue.pending_event_ids_session["tab"] = set()  # what Gradio leaves after a finished job
    blocks._queue.pending_messages_per_session["tab"] = object()
    clock.now += GRACE * 10
    assert janitor.prune_sessions() == []  # heartbeat open: live however long it idles
    janitor.heartbeat_closed("tab")
    clock.now += GRACE - 1
    assert janitor.prune_sessions() == []  # within the grace: a reconnect finds its state
    clock.now += 2
    assert janitor.prune_sessions() == ["tab"]
    assert "tab" not in blocks.state_holder.session_data
    assert "tab" not in blocks.state_holder.time_last_used
    assert "tab" not in blocks._queue.pending_event_ids_session
    assert "tab" not in blocks._queue.pending_messages_per_session


def test_a_session_with_a_job_waiting_or_running_is_kept(blocks: gr.Blocks, clock: Clock, tmp_path: Path) -> None:
    janitor = janitor_for(blocks, clock, tmp_path)
    use(blocks, "script", clock)
    blocks._queue.pending_event_ids_session["script"] = {"event-1"}
    clock.now += GRACE * 10
    assert janitor.prune_sessions() == []
    blocks._queue.pending_event_ids_session["script"].clear()
    assert janitor.prune_sessions() == ["script"]


def test_a_session_that_never_opened_a_heartbeat_goes_after_the_grace_from_its_last_use(
        blocks: gr.Blocks, clock: Clock, tmp_path: Path) -> None:
    janitor = janitor_for(blocks, clock, tmp_path)
    use(blocks, "api-call", clock)
    clock.now += GRACE / 2
    use(blocks, "api-call", clock)  # used again: the grace starts over
    clock.now += GRACE / 2 + 1
    assert janitor.prune_sessions() == []
    clock.now += GRACE / 2
    assert janitor.prune_sessions() == ["api-call"]


def test_each_sweep_renews_the_claims_of_what_gradio_holds_and_lets_the_others_lapse(
        blocks: gr.Blocks, clock: Clock, tmp_path: Path) -> None:
    janitor = janitor_for(blocks, clock, tmp_path)
    claims = janitor.claims
    assert claims is not None
    for key in ("tab", "script", "event-1", "rejected-join", "streaming"):
        assert claims.claim(f"session:{key}", "alice") == "alice"
    janitor.heartbeat_opened("tab")  # a heartbeat open, no state yet
    use(blocks, "script", clock)
    blocks._queue.pending_event_ids_session["script"] = {"event-1"}  # an event whose result is not delivered yet
    janitor.heartbeat_opened("streaming")
    for _ in range(5):  # far past the claims' lifetime, renewed by each sweep
        clock.now += GRACE
        asyncio.run(janitor.sweep_once())
    assert [claims.owner(f"session:{k}") for k in ("tab", "script", "event-1", "streaming")] == ["alice"] * 4
    assert claims.owner("session:rejected-join") is None  # nothing held it: it lapsed, and is gone from memory
    assert claims.claim("session:rejected-join", "bob") == "bob"
    assert "session:rejected-join" in claims._owners


def test_a_swept_file_loses_its_grants(blocks: gr.Blocks, clock: Clock, tmp_path: Path) -> None:
    janitor = janitor_for(blocks, clock, tmp_path, max_age=0)
    old = make_file(tmp_path, "old")
    assert janitor.grants is not None
    janitor.grants.grant("alice", {"path": old})
    assert janitor.grants.allowed("alice", old)
    asyncio.run(janitor.sweep_once())
    assert not os.path.exists(old)
    assert not janitor.grants.allowed("alice", old)


def make_file(root: Path, name: str) -> str:
    folder = root / name
    folder.mkdir(parents=True)
    path = folder / "image.png"
    path.write_bytes(b"png")
    return str(path.resolve())


def test_the_sweep_keeps_a_file_a_held_session_shows_and_removes_old_ones_nobody_holds(
        blocks: gr.Blocks, clock: Clock, tmp_path: Path) -> None:
    janitor = janitor_for(blocks, clock, tmp_path, max_age=0)
    shown, dropped, orphan = make_file(tmp_path, "a"), make_file(tmp_path, "b"), make_file(tmp_path, "c")
    for session, path in (("live", shown), ("gone", dropped)):
        janitor.heartbeat_opened(session)
        use(blocks, session, clock)
        # How Gradio records a session's last output: the postprocessed payload in its copy of the config.
        blocks.state_holder.session_data[session]._update_value_in_config(image_id(blocks), {"path": path, "url": None})
    janitor.heartbeat_closed("gone")
    blocks.temp_file_sets.append({shown, dropped, orphan})
    clock.now += GRACE
    result = asyncio.run(janitor.sweep_once())
    assert sorted(result.removed) == sorted([dropped, orphan])
    assert os.path.exists(shown)
    assert not os.path.exists(dropped)
    assert not os.path.exists(orphan)
    assert blocks.temp_file_sets[-1] == {shown}  # Gradio's own list of its files shrinks with them


def test_the_sweep_also_empties_the_image_cache_by_age(blocks: gr.Blocks, clock: Clock, tmp_path: Path) -> None:
    cache = tmp_path / "image-cache"
    copy = make_file(cache, "2026-12-01")  # a local copy of an S3 image: no session holds it, Gradio copied it
    janitor = SessionJanitor(blocks, grace_s=GRACE, temp_dir=tmp_path / "gradio", temp_max_age_s=3600,
                             clock=clock, cache_dirs=[cache])
    asyncio.run(janitor.sweep_once())
    assert os.path.exists(copy)  # young
    janitor.temp_max_age_s = 0
    asyncio.run(janitor.sweep_once())
    assert not os.path.exists(copy)


def test_files_in_use_includes_what_gradio_keeps_for_good(blocks: gr.Blocks, clock: Clock, tmp_path: Path) -> None:
    janitor = janitor_for(blocks, clock, tmp_path)
    example = make_file(tmp_path, "example")
    next(iter(blocks.blocks.values())).keep_in_cache.add(example)
    assert example in janitor.files_in_use()


def test_the_stream_watch_counts_heartbeats_and_event_streams_while_they_stream(clock: Clock, tmp_path: Path,
                                                                                blocks: gr.Blocks) -> None:
    janitor = janitor_for(blocks, clock, tmp_path)
    seen: list[tuple[bool, bool]] = []

    async def inner(scope: dict[str, Any], receive: Callable[[], Awaitable[Any]],
                    send: Callable[[Any], Awaitable[None]]) -> None:
        seen.append((janitor.live("s1"), janitor.live("e1")))

    watch = StreamWatch(inner, janitor=janitor)
    get = {"type": "http", "method": "GET", "query_string": b""}
    for scope in ({"path": "/gradio_api/heartbeat/s1"}, {"path": "/gradio_api/queue/data",
                                                         "query_string": b"session_hash=s1"},
                  {"path": "/gradio_api/call/generate_image/e1"},  # an event unknown here: its id is its session
                  {"path": "/gradio_api/call/v2/generate_image/e1"}, {"path": "/gradio_api/queue/join"},
                  {"path": "/gradio_api/heartbeat/s1", "method": "POST"}):
        asyncio.run(watch({**get, **scope}, None, None))  # type: ignore[arg-type]
    assert seen == [(True, False), (True, False), (False, True), (False, True), (False, False), (False, False)]
    assert not janitor.live("s1")
    assert janitor.quiet_since["s1"] == clock.now


def test_each_sweep_hands_free_heap_back_to_the_os(blocks: gr.Blocks, clock: Clock, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import ctypes

    import api.sessions

    trims: list[int] = []
    real_cdll = ctypes.CDLL

    class CountingLibc:
        """glibc with malloc_trim counted (and still called)."""

        def __init__(self, name: str) -> None:
            self._libc = real_cdll(name)

        def malloc_trim(self, pad: int) -> int:
            trims.append(pad)
            return self._libc.malloc_trim(pad)

    monkeypatch.setattr(ctypes, "CDLL", CountingLibc)
    asyncio.run(janitor_for(blocks, clock, tmp_path).sweep_once())
    asyncio.run(janitor_for(blocks, clock, tmp_path).sweep_once())
    assert trims == [0, 0]
    assert api.sessions.trim_heap() is True  # this Linux has glibc's malloc_trim


def test_a_stream_that_fails_after_it_began_is_ended_not_left_open(clock: Clock, tmp_path: Path,
                                                                   blocks: gr.Blocks) -> None:
    from starlette.exceptions import HTTPException

    janitor = janitor_for(blocks, clock, tmp_path)

    def failing(error: Exception, started: bool) -> Any:
        async def inner(scope: Any, receive: Any, send: Callable[[Any], Awaitable[None]]) -> None:
            if started:
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": b"data: {}\n\n", "more_body": True})
            raise error
        return inner

    def run(inner: Any) -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": "/gradio_api/queue/data", "query_string": b"session_hash=s"}
        asyncio.run(StreamWatch(inner, janitor=janitor)(scope, None, send))  # type: ignore[arg-type]
        return sent

    # Gradio's stream raising its 404 once the session is gone: Starlette's "response already started".
    gone = RuntimeError("Caught handled exception, but response already started.")
    gone.__cause__ = HTTPException(404)
    sent = run(failing(gone, started=True))
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    assert not janitor.live("s")
    for error, started in ((RuntimeError("a bug"), True), (gone, False), (ValueError("a bug"), True)):
        with pytest.raises(type(error)):
            run(failing(error, started))


def test_a_sweep_with_redis_out_of_reach_still_sweeps_files(blocks: gr.Blocks, clock: Clock, tmp_path: Path) -> None:
    import redis

    janitor = janitor_for(blocks, clock, tmp_path, max_age=0)
    janitor.claims = Claims(redis.Redis(port=1, socket_connect_timeout=0.2))  # nobody listens on port 1
    janitor.heartbeat_opened("tab")
    old = make_file(tmp_path, "old")
    result = asyncio.run(janitor.sweep_once())
    assert result.removed == [old]
