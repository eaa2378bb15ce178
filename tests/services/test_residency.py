"""One GPU, two models: an idle model is offloaded or unloaded after the keep-alive, never while in use."""

from __future__ import annotations

import logging

import pytest

from services.model_slots import Deferred, ModelSlot, ModelState, ModelUnavailableError
from services.residency import Residency
from tests.services.fakes import FakeTextBackend


def slot(backend: FakeTextBackend, kind: str = "text") -> ModelSlot[FakeTextBackend]:
    return ModelSlot(kind, backend, lambda b, report: b.load(report), model="fake", backend_name="fake")


def test_resident_policy_keeps_everything() -> None:
    b = FakeTextBackend()
    s = slot(b)
    s.ensure_loaded()
    assert Residency([s], "resident", keep_alive_s=0).sweep() == []
    assert s.status().state is ModelState.READY


def test_offload_after_keep_alive_and_back_on_next_use() -> None:
    b = FakeTextBackend()
    s = slot(b)
    with s.use():
        pass
    residency = Residency([s], "offload", keep_alive_s=3600)
    assert residency.sweep() == []  # not idle long enough
    residency.keep_alive_s = 0
    assert residency.sweep() == ["text"]
    assert b.offloaded == 1
    assert s.status().state is ModelState.OFFLOADED
    assert "parked in CPU memory" in s.status().message()
    with s.use():  # the next request brings it back through load()
        assert s.status().state is ModelState.READY
    assert b.loaded == 2


def test_unload_frees_the_model() -> None:
    b = FakeTextBackend()
    s = slot(b)
    s.ensure_loaded()
    assert Residency([s], "unload", keep_alive_s=0).sweep() == ["text"]
    assert b.unloaded == 1
    assert s.status().state is ModelState.NOT_LOADED


def test_a_model_in_use_is_never_released() -> None:
    b = FakeTextBackend()
    s = slot(b)
    with s.use():
        assert Residency([s], "unload", keep_alive_s=0).sweep() == []
        assert s.status().state is ModelState.READY
    assert b.unloaded == 0


def test_models_never_loaded_are_left_alone() -> None:
    b = FakeTextBackend()
    assert Residency([slot(b)], "offload", keep_alive_s=0).sweep() == []
    assert b.offloaded == 0


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="resident, offload or unload"):
        Residency([], "evict", keep_alive_s=0)


def test_remote_backends_are_left_alone() -> None:
    b = FakeTextBackend()
    b.remote = True  # type: ignore[attr-defined]
    s = slot(b)
    s.ensure_loaded()
    assert Residency([s], "offload", keep_alive_s=0).sweep() == []
    assert b.offloaded == 0
    assert s.status().state is ModelState.READY


def test_a_deferred_backend_is_built_once_on_first_use_and_the_sweeps_leave_it_unbuilt() -> None:
    import threading

    built: list[FakeTextBackend] = []
    gate = threading.Event()

    def build() -> FakeTextBackend:
        gate.wait(5)  # every thread asks while the first build is under way
        built.append(FakeTextBackend())
        return built[-1]

    s = ModelSlot("text", Deferred(build), lambda b, report: b.load(report), model="fake", backend_name="fake")
    for policy in ("offload", "unload"):
        assert Residency([s], policy, keep_alive_s=0).sweep() == []
    assert s.status().state is ModelState.NOT_LOADED
    assert not s.built
    assert built == []
    threads = [threading.Thread(target=s.ensure_loaded) for _ in range(4)]
    for thread in threads:
        thread.start()
    gate.set()
    for thread in threads:
        thread.join()
    assert len(built) == 1
    assert s.built
    assert s.backend is built[0]
    assert built[0].loaded == 1


def test_a_deferred_backend_that_cannot_be_built_fails_the_slot_with_the_reason() -> None:
    def build() -> FakeTextBackend:
        raise ValueError("unknown text backend 'nope'; choose one of: openai, transformers")

    s = ModelSlot("text", Deferred(build), lambda b, report: b.load(report), model="fake", backend_name="nope")
    with pytest.raises(ModelUnavailableError, match="unknown text backend 'nope'"):
        s.ensure_loaded()
    assert s.status().state is ModelState.FAILED
    assert "choose one of" in s.status().reason


def test_a_model_that_cannot_load_logs_one_line_and_keeps_its_traceback_for_debugging(
        caplog: pytest.LogCaptureFixture) -> None:
    from pipelines.loading import ModelUnavailable
    from services.model_slots import ModelUnavailableError

    def fail(_backend: object, _report: object, error: Exception) -> None:
        raise error

    for error, traceback_at in ((ModelUnavailable("The image model x is not on this machine."), logging.DEBUG),
                                (RuntimeError("a bug"), logging.WARNING)):
        caplog.clear()
        failing = ModelSlot("image", FakeTextBackend(), lambda b, r, e=error: fail(b, r, e), model="x",
                            backend_name="fake")
        with caplog.at_level(logging.DEBUG, logger="services.model_slots"), pytest.raises(ModelUnavailableError):
            failing.ensure_loaded()
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert [r.getMessage() for r in warnings] == [f"image model failed to load: {error}"]
        # The loader's traceback: only at DEBUG for an explained reason, at WARNING for anything else (a bug).
        assert [r.levelno for r in caplog.records if r.exc_info] == [traceback_at]
