"""The in-process image backend: Stable Diffusion (and other text-to-image families) through diffusers, from a hub id,
a local folder or a single checkpoint file. Loading is pipelines/diffusers_loading.py, running jobs
pipelines/diffusers_running.py; this class is the ImageBackend the registry hands out, made of the two."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from contracts import ImageRequest
from pipelines.compile import CompileOptions
from pipelines.diffusers_loading import DiffusersModel
from pipelines.diffusers_running import DiffusersRunner
from pipelines.image_base import BatchItem, BatchOutcome, GeneratedImage, ProgressFn, register_image_backend


@register_image_backend("diffusers")
class DiffusersBackend:
    """Stable Diffusion (and other text-to-image families) through diffusers, in this process."""

    name = "diffusers"
    remote = False

    def __init__(self, model: str, display_name: str | None = None, device: str | None = None,
                 memory_mode: str = "none", attention_slicing: bool = False, vae_slicing: bool = False,
                 vae_tiling: bool = False, preview_every: int = 2, preview_interval_s: float = 0.0,
                 compile: CompileOptions | None = None, compile_warmup: tuple[int, int, float] = (512, 512, 7.0),
                 upscalers_dir: Path | None = None, lora_dir: str | None = None, vae: str = "",
                 vae_dir: Path | None = None, controlnet_dir: Path | None = None,
                 annotators_dir: Path | None = None, resolve_refiner: Callable[[str], str] | None = None) -> None:
        self.loaded = DiffusersModel(model, display_name, device, memory_mode, attention_slicing, vae_slicing,
                                     vae_tiling, compile, compile_warmup, vae, vae_dir)
        self.runner = DiffusersRunner(self.loaded, preview_every, preview_interval_s, lora_dir, upscalers_dir,
                                      controlnet_dir, annotators_dir, resolve_refiner)

    @property
    def model_name(self) -> str:
        """The model as written into PNG metadata and history."""
        return self.loaded.model_name

    @property
    def revision(self) -> str:
        """Which files are loaded (a hub snapshot hash, a folder's or file's fingerprint, and the VAE's)."""
        return self.loaded.revision

    @property
    def model_hash(self) -> str:
        """A1111's Model hash of a single-file checkpoint; '' for a diffusers folder."""
        return self.loaded.model_hash

    @property
    def pipe(self) -> Any:
        """The loaded diffusers pipeline (None until load())."""
        return self.loaded.pipe

    def load(self, report: Callable[[str], None]) -> None:
        """Download if needed, then load onto the chosen device with the memory mode applied."""
        self.loaded.load(report)

    def use_checkpoint(self, model: str, display_name: str | None, vae: str = "") -> None:
        """Point the (idle) backend at another checkpoint file or folder and VAE; the next load() loads them."""
        self.runner.loras.forget()
        self.runner.refiners.forget()
        self.loaded.use_checkpoint(model, display_name, vae)

    def generate(self, req: ImageRequest, seeds: list[int], on_step: ProgressFn,
                 stop: threading.Event) -> list[GeneratedImage]:
        """Run one job image by image; each step reports progress and checks the stop signal."""
        return self.runner.generate(req, seeds, on_step, stop)

    def generate_batch(self, items: list[BatchItem]) -> list[BatchOutcome]:
        """Run jobs of one compute shape as one pipeline call; a stopped item gets None."""
        return self.runner.generate_batch(items)

    def offload(self) -> None:
        """Park the weights in CPU RAM to free GPU memory while idle (no-op on CPU or with an offload mode); loaded
        ControlNets are dropped (they load again when a job asks)."""
        self.runner.controlnets.forget()
        self.runner.refiners.forget()
        self.loaded.offload()

    def unload(self) -> None:
        """Drop the pipeline, its LoRAs and the loaded ControlNets, and give their memory back."""
        self.runner.loras.forget()
        self.runner.controlnets.forget()
        self.runner.refiners.forget()
        self.loaded.unload()

    def describe(self) -> dict[str, Any]:
        """Device, dtype and memory settings for the health page."""
        return self.loaded.describe()
