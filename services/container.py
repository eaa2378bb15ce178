"""Builds every service from settings: the one place that knows how the parts fit together."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipelines.image_base import ImageBackend, ImageLimits, create_image_backend
from services.history import HistoryService
from services.images import ImageService
from services.models import ModelSlot
from settings import Profile, Settings
from storage.db import open_database

log = logging.getLogger(__name__)

TINY_SD_NAME = "atelier-tiny-sd (random weights, makes noise)"


@dataclass
class Services:
    """Everything the UI and the API call."""

    settings: Settings
    images: ImageService
    history: HistoryService
    image_slot: ModelSlot[ImageBackend]

    def health(self) -> dict[str, Any]:
        """Server and model states for /api/health."""
        return {
            "status": "ok",
            "profile": self.settings.resolved_profile.value,
            "models": {"image": self.image_slot.status().as_dict()},
        }

    def warm_up(self) -> None:
        """Start loading models in the background."""
        self.image_slot.warm_up()


def _image_slot(settings: Settings) -> ModelSlot[ImageBackend]:
    model = settings.resolved_image_model
    tiny = model == "tiny"
    tiny_dir = settings.models_dir / "tiny-sd"
    options: dict[str, Any] = {}
    if settings.image_backend == "diffusers":
        options = {
            "model": str(tiny_dir) if tiny else model,
            "display_name": TINY_SD_NAME if tiny else None,
            "memory_mode": settings.memory_mode,
            "attention_slicing": settings.attention_slicing,
            "vae_slicing": settings.vae_slicing,
            "vae_tiling": settings.vae_tiling,
            "preview_every": settings.preview_every,
        }
    backend = create_image_backend(settings.image_backend, **options)

    def load(b: ImageBackend, report: Callable[[str], None]) -> None:
        if tiny:
            from pipelines.tiny import ensure_tiny_sd

            report("building the tiny Stable Diffusion model (first use only)")
            ensure_tiny_sd(tiny_dir)
        b.load(report)

    def describe(b: ImageBackend) -> dict[str, Any]:
        return dict(getattr(b, "describe", dict)())

    return ModelSlot("image", backend, load, model=TINY_SD_NAME if tiny else model,
                     backend_name=settings.image_backend, describe=describe)


def build_services(settings: Settings) -> Services:
    """Open storage, create backends (not loaded yet) and the services over them."""
    settings.ensure_dirs()
    open_database(settings.db_path)
    limits = ImageLimits(min_size=settings.min_size, max_size=settings.max_size, max_steps=settings.max_steps,
                         max_batch_count=settings.max_batch_count, max_prompt_chars=settings.max_prompt_chars)
    image_slot = _image_slot(settings)
    images = ImageService(image_slot, settings.images_dir, limits, defaults=settings.image_defaults)
    recovered = images.recover()
    if recovered:
        log.warning("marked %d interrupted image job(s) as failed", recovered)
    if settings.resolved_profile is Profile.TINY:
        log.warning("tiny profile: the models have random weights and make noise; they exist for tests and demos")
    return Services(settings=settings, images=images, history=HistoryService(settings.images_dir),
                    image_slot=image_slot)
