"""A running job seen from outside: the worker thread updates a snapshot, watchers stream it, anyone stops it."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, Protocol, TypeVar

from services import log_context

FINAL_STATES = ("done", "cancelled", "failed")


class Snapshot(Protocol):
    """What a job handle holds: a dataclass with a version and a status."""

    version: int
    status: str


S = TypeVar("S", bound=Snapshot)


@dataclasses.dataclass
class JobMeter:
    """A job's timeline for the request log and the metrics: when it began (when its request joined Gradio's queue,
    if it did), when it first ran on the model (its wait ends there), and its seconds on the model's device."""

    started: float = dataclasses.field(default_factory=lambda: log_context.QUEUED_AT.get() or time.perf_counter())
    ran_at: float | None = None
    first_token_at: float | None = None  # a chat reply's first token (time to first token, tokens per second)
    device_s: float = 0.0

    def running(self) -> None:
        """The job reached the model (its first batch, its first token, or a cache hit): its wait is over."""
        if self.ran_at is None:
            self.ran_at = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds since the job began."""
        return time.perf_counter() - self.started

    @property
    def queue_wait_s(self) -> float | None:
        """Seconds from the job's start until it reached the model (None if it never did)."""
        return None if self.ran_at is None else self.ran_at - self.started


async def woken(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait until `event` is set (True) or `timeout` seconds pass (False; None waits without a limit)."""
    # Not asyncio.wait_for: on Python 3.11 it swallows a cancellation that lands while the event's waiter is done but
    # not yet resumed (CPython gh-86296), so a Stop landing as a step's update woke the watcher was lost and the job
    # ran to the end. asyncio.timeout cancels the waiting task itself and never drops a cancel from outside.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()
            return True
    return False


class JobHandle(Generic[S]):
    """A job's latest snapshot, a condition to wait on it, its stop signal and its meter."""

    def __init__(self, initial: S) -> None:
        self.meter = JobMeter()
        self.stop_event = threading.Event()
        self._cond = threading.Condition()
        self._snap = initial
        self.thread: threading.Thread | None = None
        # Event-driven watchers: their event loop and the asyncio.Event an update sets (from the worker thread), and
        # the events of watchers that hold between looks, set when the job ends.
        self._wakers: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._enders: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    def stop(self) -> None:
        """Ask the worker to stop; backends check this between steps or tokens."""
        self.stop_event.set()

    def update(self, **changes: Any) -> None:
        """Replace fields of the snapshot and wake watchers."""
        with self._cond:
            self._snap = dataclasses.replace(self._snap, **changes, version=self._snap.version + 1)
            self._cond.notify_all()
            wakers = list(self._wakers)
            if self._snap.status in FINAL_STATES:
                wakers += list(self._enders)
        for loop, wake in wakers:
            if wake.is_set():  # woken already and not yet looking: it will see this update too (saves a loop wake)
                continue
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:  # that loop is closed: its watcher is gone with it
                continue

    def snapshot(self) -> S:
        """The latest snapshot."""
        with self._cond:
            return self._snap

    def wait(self, after_version: int, timeout: float) -> S:
        """Block until the snapshot is newer than `after_version` or the timeout passes."""
        with self._cond:
            self._cond.wait_for(lambda: self._snap.version > after_version, timeout=timeout)
            return self._snap

    def wait_finished(self, timeout: float | None = None) -> S:
        """Block until the job reached a final state (and its worker thread ended)."""
        with self._cond:
            self._cond.wait_for(lambda: self._snap.status in FINAL_STATES, timeout=timeout)
        if self.thread is not None:
            self.thread.join(timeout)
        return self.snapshot()

    async def watch(self, poll_s: float | None = 0.02, idle_s: float | None = None, hold_s: float = 0.0,
                    hold: Callable[[S], bool] | None = None) -> AsyncIterator[S]:
        """Yield each new snapshot until the job ends; if the watcher goes away, stop the job. With `poll_s` the
        watcher looks every poll_s seconds (updates in between are coalesced into one); with None it wakes on each
        update, yielding the latest snapshot (no poll delay, and no wake-ups while nothing happens), and with
        `idle_s` too it yields the latest snapshot again after idle_s seconds without an update (for a watcher
        that held one back). With `hold_s`, after a snapshot for which `hold(snap)` is true it lets hold_s seconds
        pass (less if the job ends) before it looks again: the updates of that time come as one, at one wake-up."""
        seen = -1
        finished = False
        loop = asyncio.get_running_loop()
        waker = None if poll_s is not None else (loop, asyncio.Event())
        ender = (loop, asyncio.Event()) if waker is not None and hold_s > 0 and hold is not None else None
        with self._cond:
            if waker is not None:
                self._wakers.add(waker)
            if ender is not None:
                self._enders.add(ender)
        try:
            while True:
                snap = self.snapshot()
                if snap.version != seen:
                    seen = snap.version
                    finished = snap.status in FINAL_STATES
                    yield snap
                    if finished:
                        return
                    if ender is not None and hold is not None and hold(snap):
                        await woken(ender[1], hold_s)
                if waker is None:
                    await asyncio.sleep(poll_s)  # type: ignore[arg-type]
                else:
                    updated = await woken(waker[1], idle_s)
                    # Cleared before the next look: an update after the look sets it again, so none is missed.
                    waker[1].clear()
                    if not updated:
                        seen = -1  # quiet for idle_s: the latest snapshot again
        finally:
            with self._cond:
                self._wakers.discard(waker) if waker is not None else None
                self._enders.discard(ender) if ender is not None else None
            # Cancelled by Stop, by the API's cancel, or by a closed tab: the model must stop too.
            if not finished:
                self.stop()

    async def final(self) -> S:
        """The job's final snapshot, awaited with one wake-up when the job ends rather than one per update (a caller
        that only wants the result must not take the event loop, and with it the GIL, from the job on every token);
        if the caller goes away first (cancelled), the job is stopped, as watch() stops it."""
        ender = (asyncio.get_running_loop(), asyncio.Event())
        with self._cond:
            self._enders.add(ender)
        snap = self.snapshot()
        try:
            while snap.status not in FINAL_STATES:
                await ender[1].wait()
                snap = self.snapshot()
            return snap
        finally:
            with self._cond:
                self._enders.discard(ender)
            if snap.status not in FINAL_STATES:
                self.stop()

    def start(self, target: Any, *args: Any, name: str) -> None:
        """Run `target(*args)` in a daemon worker thread owned by this handle, in a copy of the caller's context (a
        new thread starts with an empty one): its log lines and request log row carry the request that started it
        (services/log_context.py)."""
        context = contextvars.copy_context()
        self.thread = threading.Thread(target=context.run, args=(target, *args), name=name, daemon=True)
        self.thread.start()
