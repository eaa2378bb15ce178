"""The diffusers backend on the tiny model: determinism, progress, previews, Stop, load errors."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from contracts import ImageRequest
from pipelines.diffusers_backend import DiffusersBackend
from pipelines.image_base import BatchItem, JobCancelled, StepUpdate
from pipelines.loading import ModelUnavailable


@pytest.fixture(scope="module")
def backend(tiny_sd_dir: Path) -> DiffusersBackend:
    b = DiffusersBackend(str(tiny_sd_dir), display_name="tiny", preview_every=2)
    phases: list[str] = []
    b.load(phases.append)
    assert any("loading" in p for p in phases)
    return b


def run(backend: DiffusersBackend, req: ImageRequest, seeds: list[int],
        stop: threading.Event | None = None) -> tuple[list[Any], list[StepUpdate]]:
    updates: list[StepUpdate] = []
    images = backend.generate(req, seeds, updates.append, stop or threading.Event())
    return images, updates


def test_same_seed_gives_identical_pixels(backend: DiffusersBackend) -> None:
    req = ImageRequest(prompt="a red fox", width=64, height=64, steps=3, sampler="Euler a")
    (first,), _ = run(backend, req, [42])
    (second,), _ = run(backend, req, [42])
    (other,), _ = run(backend, req, [43])
    assert first.seed == 42
    assert first.image.size == (64, 64)
    assert np.array_equal(np.asarray(first.image), np.asarray(second.image))
    assert not np.array_equal(np.asarray(first.image), np.asarray(other.image))


@pytest.mark.parametrize("sampler", ["Euler", "DPM++ 2M", "DDIM"])
def test_samplers_run(backend: DiffusersBackend, sampler: str) -> None:
    (image,), updates = run(backend, ImageRequest(prompt="p", width=64, height=64, steps=2, sampler=sampler), [1])
    assert image.image.size == (64, 64)
    assert updates[-1].step == updates[-1].total == 2


def test_progress_every_step_and_a_cheap_preview_every_few(backend: DiffusersBackend) -> None:
    req = ImageRequest(prompt="p", width=64, height=96, steps=5, batch_count=2)
    images, updates = run(backend, req, [7, 8])
    assert [i.seed for i in images] == [7, 8]
    assert [u.step for u in updates] == list(range(1, 11))
    assert {u.total for u in updates} == {10}
    with_preview = [u.step for u in updates if u.preview is not None]
    # preview_every=2 and always at the last step of each image
    assert with_preview == [2, 4, 5, 7, 9, 10]
    assert updates[1].preview.size == (64, 96)


def test_previews_are_throttled_by_time_but_the_last_step_always_has_one(backend: DiffusersBackend,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import pipelines.diffusers_running as module

    clock = [100.0]
    monkeypatch.setattr(module, "_clock", lambda: clock[0])
    monkeypatch.setattr(backend.runner, "preview_interval_s", 1.0)
    req = ImageRequest(prompt="p", width=64, height=64, steps=9)

    def tick(update: StepUpdate) -> None:
        clock[0] += 0.3  # each step takes 0.3 s on this clock

    updates: list[StepUpdate] = []
    backend.generate(req, [3], lambda u: (updates.append(u), tick(u)), threading.Event())
    # Every 2nd step is eligible (preview_every=2), but only one per second: at step 2 (the first), then step 6
    # (1.2 s later; step 4 came 0.6 s after it), step 8 is 0.6 s after step 6; the last step always has one.
    assert [u.step for u in updates if u.preview is not None] == [2, 6, 9]
    monkeypatch.setattr(backend.runner, "preview_interval_s", 0.0)
    updates.clear()
    backend.generate(req, [3], lambda u: (updates.append(u), tick(u)), threading.Event())
    assert [u.step for u in updates if u.preview is not None] == [2, 4, 6, 8, 9]  # by steps alone


def test_stop_ends_the_job_within_one_step(backend: DiffusersBackend) -> None:
    unet_calls = 0
    unet = backend.pipe.unet
    real_forward = unet.forward

    def counting_forward(*args: Any, **kwargs: Any) -> Any:
        nonlocal unet_calls
        unet_calls += 1
        return real_forward(*args, **kwargs)

    stop = threading.Event()
    calls_at_stop = -1

    def on_step(update: StepUpdate) -> None:
        nonlocal calls_at_stop
        if update.step == 3:
            calls_at_stop = unet_calls
            stop.set()

    unet.forward = counting_forward
    try:
        with pytest.raises(JobCancelled):
            backend.generate(ImageRequest(prompt="p", width=64, height=64, steps=400, sampler="Euler"), [1],
                             on_step, stop)
    finally:
        unet.forward = real_forward
    assert calls_at_stop == 3
    assert unet_calls - calls_at_stop <= 1  # within one step of the Stop, out of 400


def test_a_stop_set_before_the_job_stops_it_before_any_step(backend: DiffusersBackend) -> None:
    stop = threading.Event()
    stop.set()
    with pytest.raises(JobCancelled):
        run(backend, ImageRequest(prompt="p", width=64, height=64, steps=2), [1], stop)


def test_describe_reports_device_and_attention(backend: DiffusersBackend) -> None:
    info = backend.describe()
    assert info["device"] == "cpu"
    assert info["dtype"] == "float32"
    assert "attention: PyTorch SDPA" in info["notes"]


def test_a_bad_folder_says_how_to_fix_it(tmp_path: Path) -> None:
    (tmp_path / "model_index.json").write_text("{not json")
    with pytest.raises(ModelUnavailable, match="--image-model.*--profile tiny"):
        DiffusersBackend(str(tmp_path)).load(lambda _: None)


def test_an_uncached_hub_model_offline_says_how_to_fix_it() -> None:
    with pytest.raises(ModelUnavailable, match="is not on this machine.*hf download.*--profile tiny"):
        DiffusersBackend("atelier-test/does-not-exist").load(lambda _: None)


def test_memory_mode_is_checked() -> None:
    with pytest.raises(ValueError, match="model-offload"):
        DiffusersBackend("x", memory_mode="lowvram")


# Batches: several jobs of one shape in one pipeline call ------------------------------------------------------
def alone(backend: DiffusersBackend, req: ImageRequest, seeds: list[int]) -> list[np.ndarray]:
    images, _ = run(backend, req, seeds)
    return [np.asarray(g.image) for g in images]


def item(req: ImageRequest, seeds: list[int], stop: threading.Event | None = None,
         updates: list[StepUpdate] | None = None) -> BatchItem:
    return BatchItem(req, seeds, (updates if updates is not None else []).append, stop or threading.Event())


@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ 2M", "Heun"])
def test_a_batch_gives_each_seed_the_pixels_it_gives_alone(backend: DiffusersBackend, sampler: str) -> None:
    fox = ImageRequest(prompt="a red fox", width=64, height=64, steps=4, sampler=sampler)
    owl = fox.model_copy(update={"prompt": "an owl at night", "negative_prompt": "blurry"})
    outcomes = backend.generate_batch([item(fox, [5, 6]), item(owl, [7])])
    assert [[g.seed for g in o or []] for o in outcomes] == [[5, 6], [7]]
    batched = [np.asarray(g.image) for o in outcomes for g in o or []]
    for got, want in zip(batched, alone(backend, fox, [5, 6]) + alone(backend, owl, [7]), strict=True):
        assert np.array_equal(got, want)


@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ 2M", "Heun"])
def test_a_stop_inside_a_batch_removes_that_job_and_spares_the_others(backend: DiffusersBackend,
                                                                     sampler: str) -> None:
    req = ImageRequest(prompt="a red fox", width=64, height=64, steps=6, sampler=sampler)
    other = req.model_copy(update={"prompt": "an owl"})
    stop = threading.Event()
    batch_rows: list[int] = []
    hook = backend.pipe.unet.register_forward_pre_hook(lambda _m, args: batch_rows.append(args[0].shape[0]))
    stopped_updates: list[StepUpdate] = []

    def on_step(update: StepUpdate) -> None:
        stopped_updates.append(update)
        if update.step == 2:
            stop.set()

    try:
        outcomes = backend.generate_batch([BatchItem(req, [1], on_step, stop), item(other, [2, 3])])
    finally:
        hook.remove()
    assert outcomes[0] is None
    assert [g.seed for g in outcomes[1] or []] == [2, 3]
    for got, want in zip(outcomes[1] or [], alone(backend, other, [2, 3]), strict=True):
        assert np.array_equal(np.asarray(got.image), want)
    # CFG doubles the rows: 3 images are 6 rows for the 2 steps before the Stop, then the 2 left are 4 rows.
    assert batch_rows[:2] == [6, 6]
    assert set(batch_rows[2:]) == {4}
    assert stopped_updates[-1].step == 2


def test_every_job_in_a_batch_gets_its_own_progress_and_preview(backend: DiffusersBackend) -> None:
    req = ImageRequest(prompt="a red fox", width=64, height=64, steps=4, sampler="Euler")
    owl = req.model_copy(update={"prompt": "an owl"})
    fox_updates: list[StepUpdate] = []
    owl_updates: list[StepUpdate] = []
    backend.generate_batch([item(req, [1, 2], updates=fox_updates), item(owl, [3], updates=owl_updates)])
    assert [(u.step, u.total) for u in fox_updates] == [(2, 8), (4, 8), (6, 8), (8, 8)]
    assert [(u.step, u.total) for u in owl_updates] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    _, owl_alone = run(backend, owl, [3])
    # Each job's preview comes from its own latents: the same as the preview it gets alone.
    for batched, single in zip(owl_updates, owl_alone, strict=True):
        assert (batched.preview is None) == (single.preview is None)
        if batched.preview is not None and single.preview is not None:
            assert np.array_equal(np.asarray(batched.preview), np.asarray(single.preview))
    assert not np.array_equal(np.asarray(fox_updates[-1].preview), np.asarray(owl_updates[-1].preview))
