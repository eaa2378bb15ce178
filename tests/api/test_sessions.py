"""The session janitor against a real (small) Gradio Blocks: which sessions it forgets, which files it keeps."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import gradio as gr
import pytest
from gradio.routes import App

from api.sessions import HeartbeatWatch, SessionJanitor

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
    return SessionJanitor(blocks, grace_s=GRACE, temp_dir=temp_dir, temp_max_age_s=max_age, clock=clock)


def use(blocks: gr.Blocks, session: str, clock: Clock) -> None:
    """What a request of `session` does to Gradio's state holder, at the test clock's time."""
    from datetime import datetime

    blocks.state_holder[session]  # creates the SessionState, as a request does
    blocks.state_holder.time_last_used[session] = datetime.fromtimestamp(clock.now)


def image_id(blocks: gr.Blocks) -> int:
    return next(b._id for b in blocks.blocks.values() if getattr(b, "elem_id", None) == "result")


def test_a_closed_session_is_forgotten_after_the_grace_with_its_owner_and_queue_entries(
        blocks: gr.Blocks, clock: Clock, tmp_path: Path) -> None:
    janitor = janitor_for(blocks, clock, tmp_path)
    janitor.heartbeat_opened("tab")
    use(blocks, "tab", clock)
    janitor.owner["tab"] = "alice"
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
    assert "tab" not in janitor.owner
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


def test_an_owner_entry_without_any_gradio_state_also_goes(blocks: gr.Blocks, clock: Clock, tmp_path: Path) -> None:
    janitor = janitor_for(blocks, clock, tmp_path)
    janitor.owner["rejected-join"] = "bob"
    assert janitor.prune_sessions() == []  # first seen now
    clock.now += GRACE
    assert janitor.prune_sessions() == ["rejected-join"]
    assert not janitor.owner


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


def test_heartbeat_watch_counts_a_heartbeat_while_it_streams(clock: Clock, tmp_path: Path,
                                                             blocks: gr.Blocks) -> None:
    janitor = janitor_for(blocks, clock, tmp_path)
    seen: list[bool] = []

    async def inner(scope: dict[str, Any], receive: Callable[[], Awaitable[Any]],
                    send: Callable[[Any], Awaitable[None]]) -> None:
        seen.append(janitor.live("s1"))

    watch = HeartbeatWatch(inner, janitor=janitor)
    scope = {"type": "http", "path": "/gradio_api/heartbeat/s1", "method": "GET"}
    asyncio.run(watch(scope, None, None))  # type: ignore[arg-type]
    asyncio.run(watch({**scope, "path": "/gradio_api/queue/join"}, None, None))  # type: ignore[arg-type]
    assert seen == [True, False]
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
