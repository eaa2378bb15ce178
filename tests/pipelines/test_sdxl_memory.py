"""The low-VRAM settings reach an SDXL pipeline as they reach SD 1.5's: the memory modes call diffusers' model or
sequential CPU offload (checked by the call, since offloading only applies on a CUDA GPU and this box has none), and
attention slicing, VAE slicing and VAE tiling are set on the pipeline; with them on, a tiny SDXL job still runs on
the CPU, to pixels within float noise of the plain run."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from contracts import ImageRequest
from pipelines.diffusers_backend import DiffusersBackend
from pipelines.diffusers_loading import DiffusersModel

MODES = {"model-offload": "enable_model_cpu_offload", "sequential-offload": "enable_sequential_cpu_offload"}


@pytest.mark.parametrize("family", ["tiny_sd_dir", "tiny_sdxl_dir"])
@pytest.mark.parametrize("mode", list(MODES))
def test_the_memory_modes_offload_sdxl_as_they_offload_sd15(request: pytest.FixtureRequest, family: str, mode: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from diffusers import DiffusionPipeline

    calls: list[tuple[str, str]] = []
    for method in MODES.values():
        monkeypatch.setattr(DiffusionPipeline, method,
                            lambda pipe, *a, _name=method, **k: calls.append((_name, type(pipe).__name__)))
    model = DiffusersModel(str(request.getfixturevalue(family)), memory_mode=mode)
    # Offloading exists on CUDA only (the model says "none" on a CPU): here the call it makes is what is checked.
    monkeypatch.setattr(model, "memory_mode_in_effect", lambda: mode)
    model.load(lambda phase: None)
    expected = "StableDiffusionXLPipeline" if family == "tiny_sdxl_dir" else "StableDiffusionPipeline"
    assert calls == [(MODES[mode], expected)]


def slicing_flags(pipe: Any) -> tuple[bool, bool, bool]:
    from diffusers.models.attention_processor import SlicedAttnProcessor

    sliced = any(isinstance(p, SlicedAttnProcessor) for p in pipe.unet.attn_processors.values())
    return sliced, bool(pipe.vae.use_slicing), bool(pipe.vae.use_tiling)


@pytest.mark.parametrize("family", ["tiny_sd_dir", "tiny_sdxl_dir"])
def test_slicing_and_tiling_are_set_on_sdxl_as_on_sd15_and_a_job_still_runs(request: pytest.FixtureRequest,
                                                                             family: str) -> None:
    path: Path = request.getfixturevalue(family)
    plain = DiffusersBackend(str(path))
    plain.load(lambda phase: None)
    assert slicing_flags(plain.pipe) == (False, False, False)
    saving = DiffusersBackend(str(path), attention_slicing=True, vae_slicing=True, vae_tiling=True)
    saving.load(lambda phase: None)
    assert slicing_flags(saving.pipe) == (True, True, True)
    req = ImageRequest(prompt="a red cat", width=64, height=64, steps=2)
    images = [np.asarray(b.generate(req, [3, 4], lambda u: None, threading.Event())[1].image, dtype=int)
              for b in (plain, saving)]
    assert images[0].shape == (64, 64, 3)
    assert np.abs(images[0] - images[1]).max() <= 2  # the same picture, sliced
