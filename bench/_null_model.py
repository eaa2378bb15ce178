"""A pipeline whose UNet and VAE decoder only sleep: both apps in bench/image_overhead.py --null-model run every
step of the same diffusers call (text encoder, scheduler, callbacks, previews, the image out) with the model's
compute replaced by sleeps, which hold no CPU and no GIL. What is left of each call's time and
CPU is the app's own work, free of the noise a busy machine puts on the convolutions.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any


def settings() -> tuple[float, float] | None:
    """(UNet seconds per call, VAE decode seconds) from ATELIER_BENCH_NULL_MODEL="UNET_MS,VAE_MS", else None."""
    value = os.environ.get("ATELIER_BENCH_NULL_MODEL", "")
    if not value:
        return None
    unet_ms, vae_ms = (float(x) for x in value.split(","))
    return unet_ms / 1000, vae_ms / 1000


def install(pipe: Any, unet_s: float, vae_s: float) -> None:
    """Replace `pipe`'s UNet forward and VAE decode by sleeps that return zeros of the right shapes."""
    import torch

    def unet_forward(sample: Any, *args: Any, **kwargs: Any) -> Any:
        time.sleep(unet_s)
        return (torch.zeros_like(sample),)

    def vae_decode(z: Any, *args: Any, **kwargs: Any) -> Any:
        # Jittered (half to one and a half times), as a real decode's time is: with a fixed length every call
        # ended at the same phase of gradio_client's 50 ms message poll, which favoured one side by chance.
        time.sleep(vae_s * random.uniform(0.5, 1.5))
        scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
        return (torch.zeros(z.shape[0], 3, z.shape[2] * scale, z.shape[3] * scale),)

    pipe.unet.forward = unet_forward
    pipe.vae.decode = vae_decode
