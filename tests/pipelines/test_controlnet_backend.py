"""ControlNet units through the diffusers backend (SD 1.5 and SDXL): the control changes pixels, weight 0 gives
exactly the picture without ControlNet, a batch of jobs with different control images gives each its pixels alone,
every mode takes units, and a unit of the wrong family or an unknown model fails with the message naming it."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from contracts import ControlNetUnit, ImageRequest
from pipelines.control_units import ControlUnitError, make_unit
from pipelines.controlnet import available_controlnets
from pipelines.diffusers_backend import DiffusersBackend
from pipelines.image_base import BatchItem
from pipelines.loras import UnknownLora
from tests.pipelines.tiny_assets import make_tiny_sdxl_lora

SIZE = 64


@pytest.fixture(scope="module")
def cn_backend(tiny_sd_dir: Path, controlnet_dir: Path, tiny_cn_sd15: Path, tiny_cn_sdxl: Path,
               tiny_sdxl_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> DiffusersBackend:
    loras = tmp_path_factory.mktemp("cn-loras")
    make_tiny_sdxl_lora(tiny_sdxl_dir, loras / "xl-only.safetensors")
    backend = DiffusersBackend(str(tiny_sd_dir), display_name="tiny-sd", controlnet_dir=controlnet_dir,
                               lora_dir=str(loras))
    backend.load(lambda phase: None)
    return backend


def square(box: tuple[int, int, int, int] = (16, 16, 48, 48)) -> Image.Image:
    image = Image.new("RGB", (SIZE, SIZE), (40, 90, 200))
    image.paste((250, 240, 10), box)
    return image


def unit(controlnet_dir: Path, model: str = "tiny-cn-sd15", **fields: Any) -> ControlNetUnit:
    values = {"module": "canny", "model": model, "image": square(), **fields}
    return make_unit(values, models=list(available_controlnets(controlnet_dir)))


def request(**fields: Any) -> ImageRequest:
    return ImageRequest(**{"prompt": "a red cat", "width": SIZE, "height": SIZE, "steps": 2, **fields})


def pixels(backend: DiffusersBackend, seed: int = 1, **fields: Any) -> np.ndarray:
    out = backend.generate(request(**fields), [seed], lambda u: None, threading.Event())
    return np.asarray(out[0].image)


def test_a_unit_changes_pixels_and_weight_0_is_exactly_no_controlnet(cn_backend: DiffusersBackend,
                                                                     controlnet_dir: Path) -> None:
    plain = pixels(cn_backend)
    controlled = pixels(cn_backend, controlnet=[unit(controlnet_dir)])
    assert not np.array_equal(controlled, plain)
    assert np.array_equal(pixels(cn_backend, controlnet=[unit(controlnet_dir)]), controlled)  # same seed
    assert np.array_equal(pixels(cn_backend, controlnet=[unit(controlnet_dir, weight=0)]), plain)
    other = pixels(cn_backend, controlnet=[unit(controlnet_dir, image=square((0, 0, 24, 60)))])
    assert not np.array_equal(other, controlled)
    assert "forward" not in vars(cn_backend.pipe.unet)  # the hook is gone after the job


def test_a_batch_with_units_gives_each_job_its_pixels_alone(cn_backend: DiffusersBackend,
                                                            controlnet_dir: Path) -> None:
    # One call's jobs share their units (the batcher groups by ImageRequest.mode_shape, which holds the units and
    # their pictures' digests); the ControlNet's work is split per row on the CPU as the UNet's is.
    units = [unit(controlnet_dir)]
    prompts = ["a red cat", "a (blue:1.2) dog"]
    items = [BatchItem(request(prompt=p, controlnet=units), [i + 3], lambda u: None, threading.Event())
             for i, p in enumerate(prompts)]
    assert items[0].req.mode_shape() == items[1].req.mode_shape()
    other = request(controlnet=[unit(controlnet_dir, image=square((0, 0, 30, 30)))])
    assert other.mode_shape() != items[0].req.mode_shape()  # another control picture: never in the same call
    out = cn_backend.generate_batch(items)
    for i, (outcome, prompt) in enumerate(zip(out, prompts, strict=True)):
        assert outcome is not None
        assert np.array_equal(np.asarray(outcome[0].image), pixels(cn_backend, i + 3, prompt=prompt,
                                                                   controlnet=units))


def test_units_apply_in_img2img_inpaint_and_both_hires_passes(cn_backend: DiffusersBackend, controlnet_dir: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    mask = Image.new("L", (SIZE, SIZE))
    mask.paste(255, (0, 0, 32, SIZE))
    cases = [{"mode": "img2img", "init_image": square(), "denoising_strength": 0.7},
             {"mode": "inpaint", "init_image": square(), "mask": mask, "mask_blur": 0},
             {"enable_hr": True, "hr_scale": 1.5, "denoising_strength": 0.7}]
    for fields in cases:
        plain = pixels(cn_backend, **fields)
        # img2img and inpaint: a unit without a picture uses the init image, as the extension does.
        image = None if "init_image" in fields else square()
        controlled = pixels(cn_backend, controlnet=[unit(controlnet_dir, image=image)], **fields)
        assert controlled.shape == plain.shape
        assert not np.array_equal(controlled, plain), fields
    # Both hires passes are controlled, each with the map made at its own size (A1111's default, "Both").
    import pipelines.diffusers_running as running

    sizes: list[tuple[int, int]] = []
    real = running.control_image
    monkeypatch.setattr(running, "control_image",
                        lambda u, w, h, *a, **k: sizes.append((w, h)) or real(u, w, h, *a, **k))
    pixels(cn_backend, controlnet=[unit(controlnet_dir)], **cases[2])
    assert sizes == [(SIZE, SIZE), (96, 96)]


def test_a_controlnet_of_the_other_family_or_gone_is_named(cn_backend: DiffusersBackend,
                                                           controlnet_dir: Path) -> None:
    with pytest.raises(ControlUnitError, match=r"tiny-cn-sdxl \[\w+\]' is a ControlNet for SDXL; the checkpoint is "
                                               r"Stable Diffusion 1.x") as err:
        pixels(cn_backend, controlnet=[unit(controlnet_dir, model="tiny-cn-sdxl")])
    assert set(err.value.errors) == {"controlnet.0.model"}
    gone = unit(controlnet_dir).model_copy(update={"model": "deleted [0123abcd]"})
    with pytest.raises(ControlUnitError, match="'deleted \\[0123abcd\\]' is not in the controlnet folder"):
        pixels(cn_backend, controlnet=[gone])


def test_an_sdxl_lora_on_sd15_is_refused_naming_both_families(cn_backend: DiffusersBackend) -> None:
    with pytest.raises(UnknownLora, match="the LoRA 'xl-only' is for SDXL and the checkpoint is Stable Diffusion 1.x"):
        pixels(cn_backend, prompt="a cat <lora:xl-only:1>")
