"""Hooks that run something at an exact point inside a model load, so load-isolation tests overlap the two
models deterministically (events, no sleeps).

"Inside the image build" is accelerate's init_empty_weights as diffusers calls it, the window in which the
process-wide nn.Module.register_parameter patch is active; "inside the text build" is the construction
contexts transformers' from_pretrained enters for the causal LM (not for the pipeline's CLIP text encoder).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

# A hang guard only: the awaited thread normally signals within a second or two; a broken build that
# deadlocks fails the test instead of hanging the suite.
WAIT_S = 120.0
WAITING = "waiting for "  # how a load that waits for the other model's load starts its phase


class Meanwhile:
    """Runs ``action(report)`` in a thread and waits until it has finished or waits for the other load."""

    def __init__(self, action: Callable[[Callable[[str], None]], Any], name: str = "meanwhile") -> None:
        self.action = action
        self.name = name
        self.phases: list[str] = []
        self.settled = threading.Event()  # finished, or blocked behind the load running now
        self.finished = threading.Event()
        self.error: BaseException | None = None
        self.result: Any = None
        self.thread: threading.Thread | None = None

    def report(self, phase: str) -> None:
        """A load's report callback: notices the wait for the other model's load."""
        self.phases.append(phase)
        if phase.startswith(WAITING):
            self.settled.set()

    def _run(self) -> None:
        try:
            self.result = self.action(self.report)
        except BaseException as err:  # re-raised in the test thread by join()
            self.error = err
        finally:
            self.finished.set()
            self.settled.set()

    def start(self) -> None:
        """Start the action in its thread."""
        self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self.thread.start()

    def start_and_settle(self) -> None:
        """Start the action; return once it finished or waits for the other load."""
        self.start()
        assert self.settled.wait(WAIT_S), f"{self.name} neither finished nor waited for the other load"

    def join(self) -> Any:
        """Wait for the action to end; raise its error, else return its result."""
        assert self.thread is not None, "start_and_settle() was never called"
        self.thread.join(WAIT_S)
        assert not self.thread.is_alive(), f"{self.name} did not end"
        if self.error is not None:
            raise self.error
        return self.result


def during_image_build(monkeypatch: pytest.MonkeyPatch, callback: Callable[[], None]) -> None:
    """Call ``callback`` once, inside the first init_empty_weights window of the next diffusers load."""
    import accelerate

    original = accelerate.init_empty_weights
    fired = threading.Event()

    @contextlib.contextmanager
    def hooked(*args: Any, **kwargs: Any) -> Iterator[None]:
        with original(*args, **kwargs):
            if not fired.is_set():
                fired.set()
                callback()
            yield

    # diffusers calls it as accelerate.init_empty_weights(), so patching the module attribute reaches it.
    monkeypatch.setattr(accelerate, "init_empty_weights", hooked)


def during_text_build(monkeypatch: pytest.MonkeyPatch, callback: Callable[[], None]) -> None:
    """Call ``callback`` once, inside the construction contexts of the next causal-LM from_pretrained."""
    from transformers import PreTrainedModel

    original = PreTrainedModel.get_init_context.__func__  # type: ignore[attr-defined]
    fired = threading.Event()

    @contextlib.contextmanager
    def window() -> Iterator[None]:
        if not fired.is_set():
            fired.set()
            callback()
        yield

    def hooked(cls: type, *args: Any, **kwargs: Any) -> list[Any]:
        contexts = list(original(cls, *args, **kwargs))
        return [*contexts, window()] if cls.__name__.endswith("ForCausalLM") else contexts

    monkeypatch.setattr(PreTrainedModel, "get_init_context", classmethod(hooked))


def meta_parameters(module: Any) -> list[str]:
    """Names of the parameters and buffers of a torch module that sit on the meta device."""
    tensors = [*module.named_parameters(), *module.named_buffers()]
    return [name for name, tensor in tensors if tensor.device.type == "meta"]


def settled_when(backend_cls: type, monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """An event set once a load of ``backend_cls`` waits for the other model's load or has ended."""
    event = threading.Event()
    original = backend_cls.load  # type: ignore[attr-defined]

    def load(self: Any, report: Callable[[str], None]) -> None:
        def watched(phase: str) -> None:
            report(phase)
            if phase.startswith(WAITING):
                event.set()

        try:
            original(self, watched)
        finally:
            event.set()

    monkeypatch.setattr(backend_cls, "load", load)
    return event


def overlap_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the next loads of the image and the text model overlap where the bug bit, whichever starts first.

    The text build waits until the image loader is inside its meta-device window (or waits for the text
    load); the image loader, inside that window, waits until the text load ended (or waits for the image
    load). Without one load at a time, the text weights are assigned inside the image window every time.
    """
    from pipelines.diffusers_backend import DiffusersBackend
    from pipelines.transformers_backend import TransformersTextBackend

    image_settled = settled_when(DiffusersBackend, monkeypatch)
    text_settled = settled_when(TransformersTextBackend, monkeypatch)

    def hold_image_build() -> None:
        image_settled.set()
        assert text_settled.wait(WAIT_S), "the text load neither ended nor waited for the image load"

    def hold_text_build() -> None:
        assert image_settled.wait(WAIT_S), "the image load neither reached its build nor waited"

    during_image_build(monkeypatch, hold_image_build)
    during_text_build(monkeypatch, hold_text_build)
