"""The cheap latent → RGB preview: its size stays bounded whatever the image size."""

from __future__ import annotations

import pytest
import torch

from pipelines.preview import MAX_PREVIEW_SIDE, SDXL_BIAS, latent_family, latents_to_preview


@pytest.mark.parametrize(("latent_hw", "expected_wh"), [
    ((32, 32), (256, 256)),  # a 256² image: the full ×8 fits
    ((8, 12), (96, 64)),  # width and height keep their order
    ((128, 128), (384, 384)),  # a 1024² image: ×3, not a 1024² preview on every message
    ((64, 160), (320, 128)),  # the long side bounds the scale
    ((400, 500), (500, 400)),  # a latent already past the bound is never shrunk
])
def test_preview_is_the_image_size_up_to_the_bound(latent_hw: tuple[int, int], expected_wh: tuple[int, int]) -> None:
    latents = torch.randn(1, 4, *latent_hw)
    preview = latents_to_preview(latents)
    assert preview.size == expected_wh
    assert max(preview.size) <= max(MAX_PREVIEW_SIDE, *latent_hw)


def test_sdxl_latents_get_sdxl_factors() -> None:
    from types import SimpleNamespace

    xl = SimpleNamespace(unet=SimpleNamespace(config=SimpleNamespace(addition_embed_type="text_time")))
    sd = SimpleNamespace(unet=SimpleNamespace(config=SimpleNamespace(addition_embed_type=None)))
    assert latent_family(xl) == "sdxl"
    assert latent_family(sd) == "sd15"
    assert latent_family(object()) == "sd15"
    zeros = torch.zeros(1, 4, 2, 2)
    # A zero latent is mid-grey for SD 1.x; SDXL's factors carry a bias.
    assert latents_to_preview(zeros, "sd15", scale=1).getpixel((0, 0)) == (128, 128, 128)
    expected = tuple(round((float(b) + 1) * 127.5) for b in SDXL_BIAS)
    assert latents_to_preview(zeros, latent_family(xl), scale=1).getpixel((0, 0)) == expected
