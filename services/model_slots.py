"""Model lifecycle: lazy, thread-safe loading with a state that the UI and /api/health can show."""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar

from pipelines.loading import ModelUnavailable
from pipelines.messages import hide_paths
from pipelines.registry import ModelBackend
from services import metrics

log = logging.getLogger(__name__)

T = TypeVar("T", bound=ModelBackend)


class ModelState(StrEnum):
    """Where a model is in its life."""

    NOT_LOADED = "not loaded"
    LOADING = "loading"
    READY = "ready"
    OFFLOADED = "offloaded"  # weights parked in CPU RAM while idle; moved back on the next request
    FAILED = "failed"


@dataclass(frozen=True)
class SlotStatus:
    """A snapshot of a slot, safe to serialise."""

    kind: str
    model: str
    backend: str
    state: ModelState
    phase: str
    reason: str
    since: float
    details: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for /api/health."""
        return {
            "model": self.model,
            "backend": self.backend,
            "state": self.state.value,
            "phase": self.phase,
            "reason": self.reason or None,
            "seconds_in_state": round(time.time() - self.since, 1),
            "message": self.message(),  # the UIs' line (the Gradio page reads it here)
            **self.details,
        }

    def message(self) -> str:
        """One line for the UI."""
        if self.state is ModelState.READY:
            return f"✅ {self.model} is ready."
        if self.state is ModelState.LOADING:
            elapsed = time.time() - self.since
            return f"⏳ {self.phase or 'loading ' + self.model} ({elapsed:.0f} s)"
        if self.state is ModelState.FAILED:
            return f"❌ {self.reason}"
        if self.state is ModelState.OFFLOADED:
            return f"💤 {self.model} is parked in CPU memory while idle; it moves back on the next request."
        return f"💤 {self.model} loads on the first request."


@dataclass(frozen=True)
class ModelChoice(Generic[T]):
    """How a slot switches its backend's checkpoint/VAE per job.

    ``resolve(model, vae)`` turns the names a job asks for ("" = the default) into a hashable key, the same key for
    names of the same files, raising ValueError (listing the choices) for an unknown name; ``apply(backend, key)``
    points the idle backend at the key's files, dropping the loaded ones, and returns the label for status."""

    resolve: Callable[[str, str], Hashable]
    apply: Callable[[T, Any], str]


class ModelUnavailableError(RuntimeError):
    """The model failed to load; the message is the user-facing reason."""


class Deferred(Generic[T]):
    """A backend to build on first use: the slot calls `build()` the first time its backend is asked for, so that a
    server starts without importing what only a model needs (torch, diffusers, transformers: ~1.5 s and ~180 MiB)."""

    def __init__(self, build: Callable[[], T]) -> None:
        self.build = build


class ModelSlot(Generic[T]):
    """Holds one backend: loads it once (first use or warm-up), remembers why it failed."""

    def __init__(self, kind: str, backend: T | Deferred[T], load: Callable[[T, Callable[[str], None]], None],
                 model: str, backend_name: str, describe: Callable[[T], dict[str, Any]] | None = None,
                 choice: ModelChoice[T] | None = None) -> None:
        self.kind = kind
        self._backend = backend
        self._load = load
        self._model = model
        self.default_model = model  # the label of the configured default, as a PNG made with it names it
        self._backend_name = backend_name
        self._describe = describe
        self._chooser = choice  # None: the backend has one model (a remote server picks its own)
        self._choice: Hashable = choice.resolve("", "") if choice else None
        self._lock = threading.RLock()
        self._turns = threading.Condition(self._lock)
        self._tickets = itertools.count()
        self._waiting: list[tuple[int, Hashable]] = []  # jobs waiting to use the slot, in arrival order
        self._in_use = 0
        self.last_used = time.monotonic()
        self._state = ModelState.NOT_LOADED
        self._phase = ""
        self._reason = ""
        self._since = time.time()

    @property
    def backend(self) -> T:
        """The backend, built now if it was given Deferred and this is its first use."""
        if isinstance(self._backend, Deferred):
            with self._lock:  # one build, whichever thread asks first
                if isinstance(self._backend, Deferred):
                    self._backend = self._backend.build()
        return self._backend  # type: ignore[return-value]  # built above

    @property
    def built(self) -> bool:
        """Whether the backend exists yet (a Deferred one is built on first use)."""
        return not isinstance(self._backend, Deferred)

    def status(self) -> SlotStatus:
        """The current state, phase and failure reason."""
        details = self._describe(self.backend) if self._describe and self._state is ModelState.READY else {}
        return SlotStatus(self.kind, self._model, self._backend_name, self._state, self._phase, self._reason,
                          self._since, details)

    def _set(self, state: ModelState, phase: str = "", reason: str = "") -> None:
        self._state, self._phase, self._reason, self._since = state, phase, reason, time.time()

    def _report(self, phase: str) -> None:
        self._phase = phase
        log.info("%s model: %s", self.kind, phase)

    def ensure_loaded(self) -> T:
        """Return the backend, loading it first if needed; raise ModelUnavailableError if it cannot load."""
        if self._state is ModelState.READY:
            return self.backend
        with self._lock:
            if self._state is ModelState.READY:
                return self.backend
            # From OFFLOADED too: the backend's load() moves parked weights back instead of reloading.
            self._set(ModelState.LOADING, f"loading {self._model}")
            started = time.perf_counter()
            try:
                self._load(self.backend, self._report)
            except Exception as err:
                reason = hide_paths(str(err)) or type(err).__name__  # the log below keeps the full text
                # A reason the backend explained (what is missing, what to do) is one line; its traceback, a
                # hundred lines of the loader's internals a user cannot act on, is for debugging. Anything else
                # is a bug worth its traceback.
                explained = isinstance(err, ModelUnavailable)
                log.warning("%s model failed to load: %s", self.kind, reason, exc_info=not explained)
                if explained:
                    log.debug("%s model: where loading failed", self.kind, exc_info=True)
                self._set(ModelState.FAILED, reason=reason)
                metrics.model_event(self.kind, "load_failed")
                raise ModelUnavailableError(reason) from err
            self._set(ModelState.READY)
            metrics.model_event(self.kind, "load", time.perf_counter() - started)
            return self.backend

    def warm_up(self) -> threading.Thread:
        """Start loading in the background; failures only change the state."""

        def run() -> None:
            with contextlib.suppress(ModelUnavailableError):  # already recorded in the state
                self.ensure_loaded()

        thread = threading.Thread(target=run, name=f"warmup-{self.kind}", daemon=True)
        thread.start()
        return thread

    @contextlib.contextmanager
    def use(self, model: str = "", vae: str = "") -> Iterator[T]:
        """Load if needed and hold the model for one job; an idle policy never releases a model in use.

        A job that asks for another checkpoint or VAE ("" = the default) waits until the jobs using the current one
        are done, then the slot switches and loads it, with the usual loading progress. Jobs take turns in arrival
        order, so a stream of jobs for the current model cannot starve one that wants another."""
        try:
            want = self._chooser.resolve(model, vae) if self._chooser else None
        except ValueError as err:  # an unknown name fails at once and changes nothing
            raise ModelUnavailableError(str(err)) from err
        with self._turns:
            ticket = next(self._tickets)
            self._waiting.append((ticket, want))
            try:
                while not self._may_enter(ticket, want):
                    self._turns.wait()
            finally:
                self._waiting.remove((ticket, want))
                self._turns.notify_all()
            if want != self._choice:
                self._switch(want)
            backend = self.ensure_loaded()
            self._in_use += 1
        try:
            yield backend
        finally:
            with self._turns:
                self._in_use -= 1
                self.last_used = time.monotonic()
                self._turns.notify_all()

    def _may_enter(self, ticket: int, want: Hashable) -> bool:
        """Whether a waiting job may go: to share the current model if no earlier job waits for another, or, once
        the slot is idle, as the earliest waiter (which may switch the model)."""
        earlier = [w for t, w in self._waiting if t < ticket]
        if want == self._choice and all(w == self._choice for w in earlier):
            return True
        return self._in_use == 0 and not earlier

    def _switch(self, want: Hashable) -> None:
        """Point the idle backend at another checkpoint/VAE; the next ensure_loaded() loads it."""
        assert self._chooser is not None  # use() switches only with a chooser, and only while nobody uses it
        assert self._in_use == 0
        label = self._chooser.apply(self.backend, want)
        log.info("%s model: switching from %s to %s", self.kind, self._model, label)
        self._choice, self._model = want, label
        self._set(ModelState.NOT_LOADED, f"switching to {label}")
        metrics.model_event(self.kind, "switch")

    def idle_seconds(self) -> float | None:
        """Seconds since the last job ended, or None when the model is busy or not resident."""
        if self._in_use or self._state is not ModelState.READY:
            return None
        return time.monotonic() - self.last_used

    def release(self, how: str) -> bool:
        """Offload ("offload": weights to CPU RAM) or unload ("unload") an idle model; False if busy or absent."""
        with self._lock:
            if self._in_use or self._state is not ModelState.READY:
                return False
            if how == "offload":
                self.backend.offload()
                self._set(ModelState.OFFLOADED, "offloaded to CPU memory while idle")
            elif how == "unload":
                self.backend.unload()
                self._set(ModelState.NOT_LOADED, "unloaded while idle")
            else:
                raise ValueError(f"how must be 'offload' or 'unload', got {how!r}")
            log.info("%s model %s: %s", self.kind, self._model, self._phase)
            metrics.model_event(self.kind, how)
            return True

    def load_counts(self) -> tuple[int, int]:
        """Jobs waiting for this slot (a model switch or load ahead of them) and jobs using it now."""
        with self._lock:
            return len(self._waiting), self._in_use
