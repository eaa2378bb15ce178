"""Per-job checkpoint/VAE through the model slot: switch only when no job uses the current model, in turn."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from services.model_slots import ModelChoice, ModelSlot, ModelState, ModelUnavailableError
from tests.services.conftest import tiny_settings

WAIT_S = 30  # only a bound on waiting for another thread; no assertion is about time


class FakeBackend:
    def __init__(self) -> None:
        self.current = "default"
        self.loads: list[str] = []
        self.fail = False

    def load(self, report: Callable[[str], None]) -> None:
        report(f"loading {self.current}")
        if self.fail:
            raise RuntimeError(f"{self.current} is broken")
        self.loads.append(self.current)


def make_slot(backend: FakeBackend) -> ModelSlot[FakeBackend]:
    known = {"", "a", "b"}

    def resolve(model: str, vae: str) -> tuple[str, str]:
        if model not in known:
            raise ValueError(f"model {model!r} is not available; choose one of: a, b.")
        return model or "default", vae

    def apply(backend: FakeBackend, key: tuple[str, str]) -> str:
        backend.current = key[0]
        return key[0]

    return ModelSlot("image", backend, lambda b, report: b.load(report), model="default", backend_name="fake",
                     choice=ModelChoice(resolve, apply))


class Job(threading.Thread):
    """Holds the slot for one model until released; records when it got in."""

    def __init__(self, slot: ModelSlot[FakeBackend], model: str, entries: list[str]) -> None:
        super().__init__(daemon=True)
        self.slot, self.model, self.entries = slot, model, entries
        self.inside, self.release = threading.Event(), threading.Event()
        self.error: BaseException | None = None
        self.saw = ""

    def run(self) -> None:
        try:
            with self.slot.use(self.model) as backend:
                self.saw = backend.current
                self.entries.append(self.model or "default")
                self.inside.set()
                self.release.wait(WAIT_S)
        except BaseException as err:
            self.error = err
            self.inside.set()


def wait_until(condition: Callable[[], bool]) -> None:
    done = threading.Event()
    for _ in range(WAIT_S * 100):
        if condition():
            return
        done.wait(0.01)
    raise AssertionError("the other thread never got there")


def enter(slot: ModelSlot[FakeBackend], model: str, entries: list[str]) -> Job:
    """Start a job and return once it holds the slot."""
    job = Job(slot, model, entries)
    job.start()
    assert job.inside.wait(WAIT_S)
    return job


def queue(slot: ModelSlot[FakeBackend], model: str, entries: list[str]) -> Job:
    """Start a job and return once it waits for the slot."""
    waiting = len(slot._waiting)
    job = Job(slot, model, entries)
    job.start()
    wait_until(lambda: len(slot._waiting) == waiting + 1)
    return job


def test_a_job_for_another_model_waits_until_the_current_one_is_free() -> None:
    backend, entries = FakeBackend(), []
    slot = make_slot(backend)
    first = enter(slot, "", entries)
    second = queue(slot, "b", entries)
    assert backend.current == "default"  # never switched while in use
    assert not second.inside.is_set()
    first.release.set()
    assert second.inside.wait(WAIT_S)
    assert second.saw == "b"
    assert backend.loads == ["default", "b"]
    assert slot.status().model == "b"
    assert slot.status().state is ModelState.READY
    second.release.set()
    second.join(WAIT_S)


def test_jobs_take_turns_in_arrival_order() -> None:
    backend, entries = FakeBackend(), []
    slot = make_slot(backend)
    a1 = enter(slot, "", entries)
    b = queue(slot, "b", entries)
    a2 = queue(slot, "", entries)  # wants the loaded model, but arrived after b: it must not jump the queue
    assert not a2.inside.is_set()
    a1.release.set()
    assert b.inside.wait(WAIT_S)
    assert not a2.inside.is_set()
    b.release.set()
    assert a2.inside.wait(WAIT_S)
    a2.release.set()
    for job in (a1, b, a2):
        job.join(WAIT_S)
    assert entries == ["default", "b", "default"]
    assert backend.loads == ["default", "b", "default"]


def test_jobs_for_the_loaded_model_share_it() -> None:
    backend, entries = FakeBackend(), []
    slot = make_slot(backend)
    jobs = [enter(slot, "a", entries) for _ in range(3)]  # all three inside at once
    assert backend.loads == ["a"]
    for job in jobs:
        job.release.set()
        job.join(WAIT_S)
    assert slot.idle_seconds() is not None


def test_an_unknown_model_fails_at_once_and_changes_nothing() -> None:
    backend, entries = FakeBackend(), []
    slot = make_slot(backend)
    holder = enter(slot, "", entries)
    with pytest.raises(ModelUnavailableError, match=r"model 'sdxl' is not available; choose one of: a, b"), \
            slot.use("sdxl"):
        pass
    assert slot._waiting == []
    assert slot.status().model == "default"
    holder.release.set()
    holder.join(WAIT_S)
    assert backend.loads == ["default"]


def test_a_model_that_fails_to_load_leaves_the_default_usable() -> None:
    backend = FakeBackend()
    slot = make_slot(backend)
    backend.fail = True
    with pytest.raises(ModelUnavailableError, match="b is broken"), slot.use("b"):
        pass
    assert slot.status().state is ModelState.FAILED
    backend.fail = False
    with slot.use("") as b:
        assert b.current == "default"
    assert slot.status().state is ModelState.READY


def test_the_container_switches_between_two_tiny_checkpoints(tmp_path: Path, tiny_sd_dir: Path) -> None:
    from pipelines.checkpoints import model_hash, write_single_file
    from services.container import TINY_SD_NAME, build_services

    services = build_services(tiny_settings(tmp_path / "data", tiny_sd_dir))
    models = services.settings.models_dir
    write_single_file(tiny_sd_dir, models / "tiny-file.safetensors")
    # The tiny profile offers tiny-sdxl beside tiny-sd (issue 24).
    assert services.catalog.models() == ["tiny-file.safetensors", "tiny-sd", "tiny-sdxl"]
    slot: ModelSlot[Any] = services.image_slot
    with slot.use("") as backend:
        assert backend.model_name == TINY_SD_NAME
        default_id = backend.pipe
    with slot.use("tiny-sd") as backend:  # the default's own folder by name: the same files, no reload
        assert backend.pipe is default_id
    with slot.use("tiny-file") as backend:
        assert backend.model_name == "tiny-file.safetensors"
        assert backend.model_hash == model_hash(models / "tiny-file.safetensors")
        assert backend.pipe is not default_id
    assert slot.status().model == "tiny-file.safetensors"
    (services.settings.vae_dir / "tiny-vae").symlink_to(tiny_sd_dir, target_is_directory=True)
    with slot.use("tiny-file", "tiny-vae") as backend:
        assert backend.loaded.vae == str(services.settings.vae_dir / "tiny-vae")
        assert "+vae:" in backend.revision
    assert slot.status().model == "tiny-file.safetensors + VAE tiny-vae"
    with slot.use("") as backend:
        assert backend.model_name == TINY_SD_NAME
        assert backend.model_hash == ""
    with pytest.raises(ModelUnavailableError, match="tiny-file.safetensors, tiny-sd"), slot.use("missing"):
        pass
