"""Loading one model never breaks the other: the tiny SD pipeline and the tiny GPTQ R1 loaded, offloaded,
unloaded and reloaded while the other one loads or runs a job, overlapped at exact points (see load_hooks)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from contracts import ImageRequest, TextOptions
from pipelines.diffusers_backend import DiffusersBackend
from pipelines.image_base import StepUpdate
from pipelines.transformers_backend import TransformersTextBackend
from tests.load_hooks import WAIT_S, WAITING, Meanwhile, during_image_build, during_text_build, meta_parameters

PICTURE = ImageRequest(prompt="a lighthouse", width=64, height=64, steps=2, sampler="Euler")
QUESTION = [{"role": "user", "content": "What is two plus two?"}]


def chat(text: TransformersTextBackend) -> list[int]:
    """A short greedy reply; its token ids."""
    stream = text.stream(QUESTION, TextOptions(temperature=0.0, max_new_tokens=4), threading.Event())
    list(stream)
    return stream.token_ids


def picture(image: DiffusersBackend, on_step: Callable[[StepUpdate], None] = lambda u: None) -> np.ndarray:
    """One tiny image with a fixed seed, as pixels."""
    (result,) = image.generate(PICTURE, [7], on_step, threading.Event())
    return np.asarray(result.image)


@pytest.fixture
def text_model(tiny_r1_gptq_dir: Path) -> TransformersTextBackend:
    return TransformersTextBackend(str(tiny_r1_gptq_dir), device="cpu")


@pytest.fixture
def image_model(tiny_sd_dir: Path) -> DiffusersBackend:
    return DiffusersBackend(str(tiny_sd_dir), display_name="tiny-sd", device="cpu")


@pytest.fixture(scope="module")
def expected(tiny_r1_gptq_dir: Path, tiny_sd_dir: Path) -> tuple[list[int], np.ndarray]:
    """The reply and the picture each model gives when it loaded alone."""
    text = TransformersTextBackend(str(tiny_r1_gptq_dir), device="cpu")
    image = DiffusersBackend(str(tiny_sd_dir), device="cpu")
    text.load(lambda p: None)
    image.load(lambda p: None)
    return chat(text), picture(image)


def test_a_text_model_loaded_while_the_image_pipeline_is_built_gets_real_weights(
    monkeypatch: pytest.MonkeyPatch, text_model: TransformersTextBackend, image_model: DiffusersBackend,
    expected: tuple[list[int], np.ndarray],
) -> None:
    # The reported failure: a chat arrives during warm-up, its model loads while diffusers has
    # nn.Module.register_parameter patched for the whole process, and generate() meets meta tensors.
    loader = Meanwhile(text_model.load, name="text-load")
    during_image_build(monkeypatch, loader.start_and_settle)
    image_model.load(lambda p: None)
    loader.join()
    assert meta_parameters(text_model.lm) == []
    assert chat(text_model) == expected[0]
    assert np.array_equal(picture(image_model), expected[1])
    assert loader.phases[0] == f"{WAITING}tiny-sd to finish before loading {text_model.model_name}"


def test_an_image_pipeline_loaded_while_the_text_model_loads_leaves_both_intact(
    monkeypatch: pytest.MonkeyPatch, text_model: TransformersTextBackend, image_model: DiffusersBackend,
    expected: tuple[list[int], np.ndarray],
) -> None:
    # An image job arrives while the text model loads: the image loader must not reach its meta-device
    # window while the text model's weights are being assigned.
    text_done = threading.Event()
    loader = Meanwhile(image_model.load, name="image-load")

    def hold_image_build() -> None:  # in the image loader's thread, inside init_empty_weights
        loader.settled.set()  # the image loader got here first: let the text load go on meanwhile
        text_done.wait(WAIT_S)  # with the bug, the text weights land on the meta device meanwhile

    during_image_build(monkeypatch, hold_image_build)
    during_text_build(monkeypatch, loader.start_and_settle)  # in the text loader's thread
    try:
        text_model.load(lambda p: None)
    finally:
        text_done.set()
    loader.join()
    assert meta_parameters(text_model.lm) == []
    assert chat(text_model) == expected[0]
    assert np.array_equal(picture(image_model), expected[1])


@pytest.mark.parametrize("running", ["chat", "image job"])
def test_a_job_runs_to_its_end_while_the_other_model_is_built(
    running: str, monkeypatch: pytest.MonkeyPatch, text_model: TransformersTextBackend,
    image_model: DiffusersBackend, expected: tuple[list[int], np.ndarray],
) -> None:
    # Jobs never take the load lock: the job is complete while the other loader is still inside its build.
    if running == "chat":
        ready, building, job, build_hook, want = text_model, image_model, chat, during_image_build, expected[0]
    else:
        ready, building, job, build_hook, want = image_model, text_model, picture, during_text_build, expected[1]
    ready.load(lambda p: None)
    meanwhile = Meanwhile(lambda report: job(ready), name=running)
    build_hook(monkeypatch, meanwhile.start_and_settle)
    building.load(lambda p: None)
    assert meanwhile.phases == []  # settled by finishing, not by waiting
    assert np.array_equal(meanwhile.join(), want)


def run_cycle(model: Any, run: Callable[[Any], Any], report: Callable[[str], None]) -> list[Any]:
    """Load, offload, reload, unload and load ``model`` again; ``run`` a job after each (re)load."""
    results = []
    for step in ("load", "offload", "load", "unload", "load"):
        if step == "load":
            model.load(report)
            results.append(run(model))
        else:
            getattr(model, step)()
    return results


def test_the_text_model_loads_offloads_unloads_and_reloads_in_the_middle_of_an_image_job(
    text_model: TransformersTextBackend, image_model: DiffusersBackend, expected: tuple[list[int], np.ndarray],
) -> None:
    image_model.load(lambda p: None)
    cycle = Meanwhile(lambda report: run_cycle(text_model, chat, report), name="text-cycle")

    def on_step(update: StepUpdate) -> None:  # between two denoising steps of the running job
        if update.step == 1:
            cycle.start_and_settle()

    assert np.array_equal(picture(image_model, on_step), expected[1])
    assert [p for p in cycle.phases if p.startswith(WAITING)] == []  # it never waited for the job
    assert cycle.join() == [expected[0]] * 3


def test_the_image_model_loads_offloads_unloads_and_reloads_in_the_middle_of_a_chat(
    text_model: TransformersTextBackend, image_model: DiffusersBackend, expected: tuple[list[int], np.ndarray],
) -> None:
    text_model.load(lambda p: None)

    cycle = Meanwhile(lambda report: run_cycle(image_model, picture, report), name="image-cycle")
    stream = text_model.stream(QUESTION, TextOptions(temperature=0.0, max_new_tokens=4), threading.Event())
    next(stream)  # the reply is under way: its worker thread is generating
    cycle.start_and_settle()
    list(stream)
    assert stream.token_ids == expected[0]
    assert [p for p in cycle.phases if p.startswith(WAITING)] == []  # it never waited for the job
    assert all(np.array_equal(p, expected[1]) for p in cycle.join())


def test_a_tiny_model_built_while_the_image_pipeline_is_built_is_whole(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, image_model: DiffusersBackend,
) -> None:
    # The tiny profile builds its text model on first use, in the warm-up that loads the image model too.
    from pipelines.tiny import ensure_tiny_r1

    builder = Meanwhile(lambda report: ensure_tiny_r1(tmp_path / "tiny-r1", report), name="tiny-build")
    during_image_build(monkeypatch, builder.start_and_settle)
    image_model.load(lambda p: None)
    built = TransformersTextBackend(str(builder.join()), device="cpu")
    built.load(lambda p: None)
    assert meta_parameters(built.lm) == []
    assert chat(built)


def test_jobs_give_the_same_output_whatever_torch_default_dtype_a_load_has_set(
    text_model: TransformersTextBackend, image_model: DiffusersBackend, expected: tuple[list[int], np.ndarray],
) -> None:
    # The one patched global a job may read: a half-precision load sets it process-wide while it builds.
    import torch

    text_model.load(lambda p: None)
    image_model.load(lambda p: None)
    for dtype in (torch.float16, torch.bfloat16):
        torch.set_default_dtype(dtype)
        try:
            assert chat(text_model) == expected[0]
            assert np.array_equal(picture(image_model), expected[1])
        finally:
            torch.set_default_dtype(torch.float32)
