"""Two slots, one process: a chat and an image job started together while the models warm up or reload
both finish (tiny models, loads overlapped at exact points), and one slot's load, offload or unload never
holds up the other slot (scripted backends)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from services.container import Services, build_services
from services.model_slots import ModelSlot, ModelState
from services.residency import Residency
from tests.load_hooks import WAIT_S, Meanwhile, overlap_loads
from tests.services.conftest import tiny_settings
from tests.services.fakes import FakeTextBackend

# --- both tiny models: a chat and an image job at once ----------------------------------------------


@pytest.fixture
def both(tmp_path: Path, tiny_sd_dir: Path, tiny_r1_gptq_dir: Path) -> Iterator[Services]:
    services = build_services(tiny_settings(tmp_path / "data", tiny_sd_dir, tiny_r1_gptq_dir))
    yield services
    services.shut_down()


def chat_and_picture_at_once(services: Services) -> tuple[Any, Any]:
    """Start a chat and an image job together; their final snapshots."""
    chat = services.chat.start(services.chat.validate("What is two plus two?", max_new_tokens=8))
    image = services.images.start(services.images.validate(prompt="a lighthouse", width=64, height=64, steps=2))
    return chat.wait_finished(WAIT_S), image.wait_finished(WAIT_S)


def assert_both_done(chat: Any, image: Any) -> None:
    assert (chat.status, chat.error) == ("done", "")
    assert chat.usage["completion_tokens"] > 0
    assert (image.status, image.error) == ("done", "")
    assert len(image.files) == 1


def test_a_chat_and_an_image_job_sent_during_warm_up_both_finish(
    monkeypatch: pytest.MonkeyPatch, both: Services
) -> None:
    overlap_loads(monkeypatch)
    both.warm_up()
    assert_both_done(*chat_and_picture_at_once(both))
    assert both.text_slot.status().state is both.image_slot.status().state is ModelState.READY


def test_a_chat_and_an_image_job_after_an_idle_unload_both_finish(
    monkeypatch: pytest.MonkeyPatch, both: Services
) -> None:
    assert_both_done(*chat_and_picture_at_once(both))
    both.residency.policy, both.residency.keep_alive_s = "unload", 0
    assert sorted(both.residency.sweep()) == ["image", "text"]
    overlap_loads(monkeypatch)  # the two reloads overlap
    assert_both_done(*chat_and_picture_at_once(both))


# --- scripted backends: one slot never waits for the other ------------------------------------------


class GatedBackend(FakeTextBackend):
    """A scripted backend whose load, offload or unload can be held at a gate until the test opens it."""

    def __init__(self) -> None:
        super().__init__()
        self.gated: set[str] = set()
        self.entered = threading.Event()
        self.gate = threading.Event()

    def _pass(self, what: str) -> None:
        if what in self.gated:
            self.entered.set()
            assert self.gate.wait(WAIT_S), f"the {what} gate was never opened"

    def load(self, report: Callable[[str], None]) -> None:
        self._pass("load")
        super().load(report)

    def offload(self) -> None:
        self._pass("offload")
        super().offload()

    def unload(self) -> None:
        self._pass("unload")
        super().unload()


def slot(kind: str) -> ModelSlot[GatedBackend]:
    return ModelSlot(kind, GatedBackend(), lambda b, report: b.load(report), model=kind, backend_name="gated")


def job_on(target: ModelSlot[GatedBackend]) -> Meanwhile:
    """Run one job on ``target`` in a thread (load if needed, use, reload after a release)."""

    def job(report: Callable[[str], None]) -> int:
        with target.use() as backend:
            return backend.loaded

    return Meanwhile(job, name=f"job-on-{target.kind}")


@pytest.mark.parametrize("how", ["load", "offload", "unload"])
def test_a_slot_held_in_load_or_release_never_holds_up_the_other_slot(how: str) -> None:
    image, text = slot("image"), slot("text")
    text.ensure_loaded()
    image.ensure_loaded()
    image.backend.gated.add(how)
    if how == "load":
        image.release("unload")  # so the next use loads again
        stuck = job_on(image)
    else:
        stuck = Meanwhile(lambda report: Residency([image], how, keep_alive_s=0).sweep(), name="sweep")
    stuck.start()
    assert image.backend.entered.wait(WAIT_S)
    # The image slot is held inside its backend; jobs on the text slot still load, run and are released.
    text.release("unload")
    other = job_on(text)
    other.start_and_settle()  # finished while the image slot is still held: it never waited on it
    assert other.join() == 2
    image.backend.gate.set()
    stuck.join()
    assert text.status().state is ModelState.READY


def test_the_idle_sweep_releases_one_slot_while_the_other_runs_a_job() -> None:
    image, text = slot("image"), slot("text")
    text.ensure_loaded()
    with image.use():  # a long image job
        assert Residency([image, text], "unload", keep_alive_s=0).sweep() == ["text"]
        other = job_on(text)  # a chat reloads the text model meanwhile
        other.start_and_settle()
        assert other.join() == 2
        assert image.status().state is ModelState.READY
