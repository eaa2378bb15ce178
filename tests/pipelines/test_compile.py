"""torch.compile on the tiny model: same pixels as eager, progress while warming up, dynamic sizes without
recompiling, the memory-mode fallback and the eager fallback when the compiler fails.

The compiler backend here is "eager" (dynamo captures the graphs, runs them unoptimised): it exercises the
wrapping, the guards and the warm-up in seconds; inductor on two shared cores takes minutes."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from contracts import ImageRequest
from pipelines.compile import CompileOptions
from pipelines.diffusers_backend import DiffusersBackend
from pipelines.diffusers_loading import DiffusersModel
from services.model_slots import ModelSlot

# Fused QKV runs one matmul where eager runs three; float32 rounding then moves a pixel by at most a level.
PIXEL_TOLERANCE = 2
WARMUP = (64, 64, 7.0)


def _pixels(backend: DiffusersBackend, width: int = 64, height: int = 64, cfg: float = 7.0) -> np.ndarray:
    req = ImageRequest(prompt="a lighthouse", width=width, height=height, steps=3, cfg_scale=cfg)
    (image,) = backend.generate(req, [42], lambda update: None, threading.Event())
    return np.asarray(image.image).astype(int)


def _compiled(model: Path, backend: str | Callable[..., Any] = "eager", **kwargs: Any) -> DiffusersBackend:
    return DiffusersBackend(str(model), device="cpu", compile=CompileOptions(enabled=True, backend=backend),
                            compile_warmup=WARMUP, **kwargs)


@pytest.fixture(scope="module")
def eager(tiny_sd_dir: Path) -> DiffusersBackend:
    b = DiffusersBackend(str(tiny_sd_dir), device="cpu")
    b.load(lambda phase: None)
    return b


@pytest.fixture(scope="module")
def loaded(tiny_sd_dir: Path) -> tuple[DiffusersBackend, list[dict[str, Any]]]:
    """A compiled backend loaded through a ModelSlot, with the slot's status seen at every load phase."""
    backend = _compiled(tiny_sd_dir)
    seen: list[dict[str, Any]] = []
    slot: ModelSlot[DiffusersBackend] = ModelSlot("image", backend, lambda b, report: b.load(report),
                                                  model="tiny", backend_name="diffusers",
                                                  describe=lambda b: b.describe())
    report = slot._report

    def watch(phase: str) -> None:
        report(phase)
        seen.append(slot.status().as_dict())

    slot._report = watch  # type: ignore[method-assign]
    slot.warm_up().join()
    seen.append(slot.status().as_dict())
    return backend, seen


def test_health_shows_compiling_during_warm_up_and_the_result_after(
        loaded: tuple[DiffusersBackend, list[dict[str, Any]]]) -> None:
    _, seen = loaded
    during = [s for s in seen if "compiling the UNet" in s["phase"]]
    assert during, [s["phase"] for s in seen]
    assert {s["state"] for s in during} == {"loading"}
    after = seen[-1]
    assert after["state"] == "ready"
    assert after["compile"]["state"] == "ready"
    assert after["compile"]["seconds"] > 0
    assert after["compile"]["backend"] == "eager"
    assert after["compile"]["compiled"] == ["UNet: 4 × BasicTransformerBlock (regional)", "VAE decoder"]
    assert "attention: fused QKV projections" in after["notes"]


def test_compiled_gives_the_same_pixels_as_eager(loaded: tuple[DiffusersBackend, list[dict[str, Any]]],
                                                 eager: DiffusersBackend) -> None:
    backend, _ = loaded
    for width, height, cfg in ((64, 64, 7.0), (96, 64, 7.0), (64, 64, 0.0)):
        difference = np.abs(_pixels(backend, width, height, cfg) - _pixels(eager, width, height, cfg)).max()
        assert difference <= PIXEL_TOLERANCE, (width, height, cfg, difference)
    assert backend.describe()["compile"]["state"] == "ready"


def test_a_new_size_or_batch_reuses_the_warm_up_graphs(
        loaded: tuple[DiffusersBackend, list[dict[str, Any]]]) -> None:
    from torch._dynamo.utils import counters

    # Within the warm-up's size class: on CPU the VAE decoder's convolutions add one guard on the image area
    # (from the CPU conv's memory-format choice), so a much larger image recompiles the decoder once.
    backend, _ = loaded
    before = counters["stats"]["unique_graphs"]
    _pixels(backend, 96, 64, 7.0)  # a size never seen, wide rather than square
    _pixels(backend, 64, 64, 0.0)  # no guidance: UNet batch 1
    backend.pipe(prompt=["a", "b", "c"], width=64, height=128, num_inference_steps=2, output_type="np")  # batch 3
    assert counters["stats"]["unique_graphs"] == before


def test_off_by_default_and_reported_so(eager: DiffusersBackend) -> None:
    assert eager.describe()["compile"]["state"] == "off"
    assert not any("fused QKV" in note for note in eager.loaded.notes)


def test_sequential_offload_runs_eager_and_says_why(tiny_sd_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture,
                                                    eager: DiffusersBackend) -> None:
    # Offload modes only exist on CUDA; here the mode is put in effect and its hooks replaced by a plain move.
    monkeypatch.setattr(DiffusersModel, "memory_mode_in_effect", lambda self: self.memory_mode)
    monkeypatch.setattr(DiffusersModel, "_apply_memory_mode", lambda self, pipe, mode: pipe.to("cpu"))
    backend = _compiled(tiny_sd_dir, memory_mode="sequential-offload")
    with caplog.at_level(logging.WARNING, logger="pipelines.diffusers_loading"):
        backend.load(lambda phase: None)
    status = backend.describe()["compile"]
    assert status["state"] == "skipped"
    assert "sequential-offload" in status["reason"]
    assert any("torch.compile is off" in r.getMessage() and "sequential-offload" in r.getMessage()
               for r in caplog.records)
    assert any(note.startswith("compile skipped") for note in backend.loaded.notes)
    assert np.array_equal(_pixels(backend), _pixels(eager))  # eager, untouched: the very same pixels


def test_model_offload_keeps_compile(tiny_sd_dir: Path) -> None:
    from pipelines.compile import compile_blocker

    assert compile_blocker("model-offload") is None
    assert compile_blocker("none") is None
    assert compile_blocker("sequential-offload")


def _failing_backend(gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Callable[..., Any]:
    raise RuntimeError("the compiler broke")


def test_a_compiler_failure_at_warm_up_falls_back_to_eager(tiny_sd_dir: Path, caplog: pytest.LogCaptureFixture,
                                                           eager: DiffusersBackend) -> None:
    backend = _compiled(tiny_sd_dir, backend=_failing_backend)
    with caplog.at_level(logging.WARNING, logger="pipelines.compile"):
        backend.load(lambda phase: None)
    status = backend.describe()["compile"]
    assert status["state"] == "failed"
    assert "the compiler broke" in status["reason"]
    assert any("running eager from now on" in r.getMessage() for r in caplog.records)
    assert np.abs(_pixels(backend) - _pixels(eager)).max() <= PIXEL_TOLERANCE


def test_a_compiled_graph_failing_in_a_job_falls_back_without_failing_it(
        tiny_sd_dir: Path, caplog: pytest.LogCaptureFixture, eager: DiffusersBackend) -> None:
    broken = threading.Event()

    def flaky_backend(gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Callable[..., Any]:
        def run(*args: Any) -> Any:
            if broken.is_set():
                raise RuntimeError("a kernel failed at run time")
            return gm.forward(*args)

        return run

    backend = _compiled(tiny_sd_dir, backend=flaky_backend)
    backend.load(lambda phase: None)
    assert backend.describe()["compile"]["state"] == "ready"
    broken.set()
    with caplog.at_level(logging.WARNING, logger="pipelines.compile"):
        pixels = _pixels(backend)
    assert np.abs(pixels - _pixels(eager)).max() <= PIXEL_TOLERANCE
    status = backend.describe()["compile"]
    assert status["state"] == "failed"
    assert "a kernel failed at run time" in status["reason"]
    assert sum("running eager from now on" in r.getMessage() for r in caplog.records) == 1


def test_a_failed_warm_up_still_loads_the_model_eager(tiny_sd_dir: Path, caplog: pytest.LogCaptureFixture,
                                                     eager: DiffusersBackend) -> None:
    # A warm-up that cannot run (here a size the pipeline refuses; on a GPU, say, out of memory at batch 2).
    backend = _compiled(tiny_sd_dir)
    backend.loaded.compile_warmup = (60, 64, 7.0)
    with caplog.at_level(logging.WARNING, logger="pipelines.compile"):
        backend.load(lambda phase: None)
    status = backend.describe()["compile"]
    assert status["state"] == "failed"
    assert status["reason"].startswith("warm-up: ValueError")
    assert any("compile warm-up failed" in r.getMessage() for r in caplog.records)
    assert np.abs(_pixels(backend) - _pixels(eager)).max() <= PIXEL_TOLERANCE
