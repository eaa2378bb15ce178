"""JobHandle.watch: an event-driven watcher sees every update a worker thread makes, without polling."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from typing import Any

import pytest

from services.jobs import JobHandle


@dataclasses.dataclass
class Snap:
    version: int
    status: str
    step: int = 0


def no_timer_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any timed asyncio.sleep fail: an event-driven watcher must never poll."""

    async def refuse(delay: float, result: Any = None) -> Any:
        raise AssertionError(f"the watcher polled (asyncio.sleep({delay}))")

    monkeypatch.setattr(asyncio, "sleep", refuse)


def test_event_driven_watch_wakes_on_each_update_from_a_worker_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    no_timer_sleep(monkeypatch)
    handle: JobHandle[Snap] = JobHandle(Snap(version=0, status="waiting"))
    seen: list[tuple[str, int]] = []
    step_seen = threading.Event()

    def worker() -> None:
        handle.update(status="running")
        for step in (1, 2, 3):
            step_seen.clear()
            handle.update(step=step)
            step_seen.wait(10)  # one update at a time, so that none is coalesced with the next
        handle.update(status="done")

    async def watch() -> None:
        async for snap in handle.watch(poll_s=None):
            seen.append((snap.status, snap.step))
            if handle.thread is None:  # the worker starts once the watcher is listening
                handle.start(worker, name="test-worker")
            if snap.step:
                step_seen.set()

    # A bound so that a watcher that is never woken fails instead of hanging (not a speed check).
    asyncio.run(asyncio.wait_for(watch(), 60))
    assert seen[0] == ("waiting", 0)
    assert [s for s in seen if s[0] == "running" and s[1]] == [("running", 1), ("running", 2), ("running", 3)]
    assert seen[-1] == ("done", 3)
    assert handle._wakers == set()  # the watcher unregistered itself
    assert not handle.stop_event.is_set()  # it saw the end: nothing to stop


def test_event_driven_watcher_that_leaves_early_stops_the_job() -> None:
    handle: JobHandle[Snap] = JobHandle(Snap(version=0, status="running"))

    async def watch_one() -> None:
        async for _ in handle.watch(poll_s=None):
            break  # a closed tab or a Stop: the generator is closed before the job ends

    asyncio.run(watch_one())
    assert handle.stop_event.is_set()
    assert handle._wakers == set()


def test_an_idle_watcher_hears_the_latest_snapshot_again_after_a_quiet_spell() -> None:
    handle: JobHandle[Snap] = JobHandle(Snap(version=0, status="running"))
    seen: list[int] = []

    async def watch() -> None:
        async for snap in handle.watch(poll_s=None, idle_s=0.01):
            seen.append(snap.version)
            if len(seen) == 3:
                handle.update(status="done")

    asyncio.run(asyncio.wait_for(watch(), 60))
    assert seen == [0, 0, 0, 1]  # the quiet job's snapshot twice more, then the end


def test_final_wakes_its_caller_once_when_the_job_ends_not_on_every_update(monkeypatch: pytest.MonkeyPatch) -> None:
    # A non-streamed API reply only wants the end: a wake-up of the event loop per token took the GIL from the model.
    no_timer_sleep(monkeypatch)
    wakes: list[Any] = []
    original = asyncio.BaseEventLoop.call_soon_threadsafe

    def counted(self: asyncio.BaseEventLoop, callback: Any, *args: Any, **kwargs: Any) -> Any:
        wakes.append(callback)
        return original(self, callback, *args, **kwargs)

    monkeypatch.setattr(asyncio.BaseEventLoop, "call_soon_threadsafe", counted)
    handle: JobHandle[Snap] = JobHandle(Snap(version=0, status="running"))

    def worker() -> None:
        for step in range(1, 21):
            handle.update(step=step)
            threading.Event().wait(0.002)  # paced, so that a watcher woken per update would be woken many times
        handle.update(status="done")

    async def final() -> Snap:
        handle.start(worker, name="test-worker")
        return await handle.final()

    snap = asyncio.run(asyncio.wait_for(final(), 60))
    assert (snap.status, snap.step) == ("done", 20)
    assert len(wakes) == 1
    assert handle._enders == set()
    assert handle._wakers == set()
    assert not handle.stop_event.is_set()


def test_final_of_a_caller_that_goes_away_stops_the_job_and_of_an_ended_job_returns_at_once() -> None:
    handle: JobHandle[Snap] = JobHandle(Snap(version=0, status="running"))

    async def leave() -> None:
        task = asyncio.ensure_future(handle.final())
        await asyncio.sleep(0)  # it is waiting now
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(leave())
    assert handle.stop_event.is_set()
    assert handle._enders == set()
    ended: JobHandle[Snap] = JobHandle(Snap(version=3, status="failed"))
    assert asyncio.run(asyncio.wait_for(ended.final(), 60)).status == "failed"


@pytest.mark.parametrize("turns", range(6))
def test_a_cancel_that_lands_as_an_update_wakes_the_watcher_still_stops_the_job(turns: int) -> None:
    # Stop cancels the task that iterates the watcher (Gradio's /cancel). An update sets the watcher's event just
    # before: the cancel then lands `turns` loop turns after it, while the watcher is being woken. On Python 3.11
    # asyncio.wait_for returns the result instead when its future is done by then (CPython gh-86296): the cancel
    # was lost, the job ran to the end and was recorded as done, and Gradio's /cancel waited for it all along.
    handle: JobHandle[Snap] = JobHandle(Snap(version=0, status="running"))

    async def stop_while_woken() -> tuple[bool, bool]:
        async def watch() -> None:
            async for _ in handle.watch(poll_s=None, idle_s=60.0):  # as the image tab watches
                pass

        task = asyncio.ensure_future(watch())
        for _ in range(3):
            await asyncio.sleep(0)  # the first snapshot is out: the watcher waits for the next
        handle.update(step=1)
        for _ in range(turns):
            await asyncio.sleep(0)
        task.cancel()
        for _ in range(20):  # turns enough for the cancel to unwind (a watcher that lost it waits 60 s)
            await asyncio.sleep(0)
        # Looked at here: leaving asyncio.run would cancel a watcher still waiting once more.
        return task.cancelled(), handle.stop_event.is_set()

    assert asyncio.run(stop_while_woken()) == (True, True)  # the watcher ended by the cancel, and stopped the job
    assert handle._wakers == set()
    assert handle._enders == set()
