"""The SDXL refiner as AUTOMATIC1111 offers it: a second checkpoint that takes over the denoising at "switch at", a
fraction of the steps. As in diffusers' documented base + refiner ensemble (``denoising_end`` on the base call, its
latents handed to the refiner's img2img pipeline with ``denoising_start``), so the schedule is one: the base runs the
noisiest part, the refiner the rest, on the same latents.

The refiner is loaded as any checkpoint is (pipelines/diffusers_loading.py: single file or folder, the same device,
dtype, memory mode and VAE tiling/slicing as the base), and any SDXL checkpoint can serve, as in A1111. One refiner is
kept loaded beside the base; asking for another replaces it, and it goes when the base is unloaded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pipelines.diffusers_loading import DiffusersModel

log = logging.getLogger(__name__)


class RefinerUnavailable(RuntimeError):
    """The refiner named by a job cannot run: unknown, or not of the base's family."""


class Refiners:
    """The refiner checkpoint loaded beside a base model (at most one), loaded like the base."""

    def __init__(self, base: DiffusersModel, resolve: Callable[[str], str] | None) -> None:
        self.base = base
        self.resolve = resolve  # a job's refiner name -> its file or folder (the catalog's names)
        self.loaded: DiffusersModel | None = None

    def get(self, name: str) -> DiffusersModel:
        """The loaded refiner for a checkpoint name (loaded now if it is not the one kept)."""
        if self.base.inpainting_unet():
            raise RefinerUnavailable("refiner_checkpoint: the checkpoint is an inpainting model, whose txt2img runs as "
                                     "an inpaint; a refiner continues an ordinary SDXL checkpoint")
        if self.resolve is None:
            raise RefinerUnavailable("this server's image backend has no checkpoint folder to take a refiner from")
        try:
            source = self.resolve(name)
        except ValueError as err:
            raise RefinerUnavailable(f"refiner_checkpoint: {err}") from None
        if self.loaded is not None and self.loaded.model == source:
            return self.loaded
        self.forget()
        base = self.base
        refiner = DiffusersModel(source, name, base.placement.device, base.memory_mode, base.attention_slicing,
                                 base.vae_slicing, base.vae_tiling, vae_dir=base.vae_dir)
        refiner.load(lambda phase: log.info("refiner: %s", phase))
        problem = (f"{name!r} is a {refiner.family()} checkpoint; a refiner must be an SDXL checkpoint, as the base "
                   "it continues" if refiner.family() != "sdxl" else
                   f"{name!r} is an inpainting checkpoint; a refiner must be an ordinary SDXL checkpoint"
                   if refiner.inpainting_unet() else "")
        if problem:
            refiner.unload()
            raise RefinerUnavailable(f"refiner_checkpoint: {problem}")
        self.loaded = refiner
        return refiner

    def forget(self) -> None:
        """Drop the kept refiner and give its memory back."""
        if self.loaded is not None:
            self.loaded.unload()
            self.loaded = None
