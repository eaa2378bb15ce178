"""Cheap latent → RGB previews: a 4×3 linear map instead of a full VAE decode per step."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

# Linear factors fitted to the SD 1.x/2.x and SDXL VAEs (the same approximation ComfyUI and
# AUTOMATIC1111 use for their "cheap" previews): ComfyUI's comfy/latent_formats.py (SD15, SDXL with its bias).
# Rows are latent channels, columns RGB.
SD15_FACTORS = torch.tensor(
    [
        [0.3512, 0.2297, 0.3227],
        [0.3250, 0.4974, 0.2350],
        [-0.2829, 0.1762, 0.2721],
        [-0.2120, -0.2616, -0.7177],
    ]
)
SDXL_FACTORS = torch.tensor(
    [
        [0.3651, 0.4232, 0.4341],
        [-0.2533, -0.0042, 0.1068],
        [0.1076, 0.1111, -0.0362],
        [-0.3165, -0.2492, -0.2188],
    ]
)
SDXL_BIAS = torch.tensor([0.1084, -0.0175, -0.0011])


# Previews are shown in a box about 320 px high: a bigger one costs JPEG encoding and bytes on every message.
MAX_PREVIEW_SIDE = 384


def latent_family(pipe: object) -> str:
    """The preview factors a pipeline's latents need: "sdxl" for any SDXL pipeline (its UNet takes the text_time
    embedding: txt2img, img2img, inpaint, with or without ControlNet), else "sd15"."""
    unet = getattr(pipe, "unet", None)
    return "sdxl" if getattr(getattr(unet, "config", None), "addition_embed_type", None) == "text_time" else "sd15"


def latents_to_preview(latents: torch.Tensor, family: str = "sd15", scale: int = 8,
                       max_side: int = MAX_PREVIEW_SIDE) -> Image.Image:
    """Turn the first latent of a batch (C×h×w) into a small RGB image, upscaled by `scale` but no further than
    `max_side` pixels on its long side (never below the latent's own size)."""
    latent = latents[0].detach().float().cpu()
    if latent.shape[0] != 4:
        # Unknown latent space (e.g. 16-channel SD3): show the first three channels as a hint.
        rgb = latent[:3].permute(1, 2, 0)
    elif family == "sdxl":
        rgb = torch.einsum("chw,cr->hwr", latent, SDXL_FACTORS) + SDXL_BIAS
    else:
        rgb = torch.einsum("chw,cr->hwr", latent, SD15_FACTORS)
    array = ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    image = Image.fromarray(np.ascontiguousarray(array), mode="RGB")
    scale = max(1, min(scale, max_side // max(image.width, image.height)))
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.Resampling.BILINEAR)
    return image
