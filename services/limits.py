"""What a request may hold, as the UI needs it: the error for a bad request, the seed range, the sampler names.

They live in pipelines/ (the backends check them too); this module hands them on so that ui/ never imports pipelines/.
"""

from __future__ import annotations

from pipelines.image_base import (
    IMAGE_UPSCALERS,
    INPAINTING_FILLS,
    LATENT_UPSCALERS,
    MAX_FULL_RES_PADDING,
    MAX_HR_SCALE,
    MAX_MASK_BLUR,
    MAX_SEED,
    RESIZE_MODES,
    SAMPLERS,
    InvalidRequest,
)

__all__ = ["IMAGE_UPSCALERS", "INPAINTING_FILLS", "LATENT_UPSCALERS", "MAX_FULL_RES_PADDING", "MAX_HR_SCALE",
           "MAX_MASK_BLUR", "MAX_SEED", "RESIZE_MODES", "SAMPLERS", "InvalidRequest"]
