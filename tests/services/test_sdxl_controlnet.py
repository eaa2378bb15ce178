"""SDXL and ControlNet through the services, with the tiny models: tiny-sdxl offered beside tiny-sd, every mode on it,
its PNG and history; ControlNet units checked (each bad value named), run, written into the PNG as
sd-webui-controlnet writes them and read back by PNG Info, their pictures kept with the job."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from services import pnginfo
from services.container import Services, build_services
from services.images import run_and_collect
from tests.pipelines.tiny_assets import make_tiny_sdxl_lora
from tests.services.conftest import tiny_settings

SIZE = 64


@pytest.fixture(scope="module")
def xl_services(tmp_path_factory: pytest.TempPathFactory, tiny_sd_dir: Path, tiny_sdxl_dir: Path,
                tiny_cn_sd15: Path, tiny_cn_sdxl: Path, module_database_url: str) -> Services:
    data = tmp_path_factory.mktemp("data")
    make_tiny_sdxl_lora(tiny_sdxl_dir, data / "loras" / "xl-style.safetensors")
    settings = tiny_settings(data, tiny_sd_dir, tiny_sdxl_dir=tiny_sdxl_dir, database_url=module_database_url,
                             controlnets={"tiny-cn-sd15": tiny_cn_sd15, "tiny-cn-sdxl": tiny_cn_sdxl},
                             cache_enabled=False)
    return build_services(settings)


def square(box: tuple[int, int, int, int] = (16, 16, 48, 48)) -> Image.Image:
    image = Image.new("RGB", (SIZE, SIZE), (40, 90, 200))
    image.paste((250, 240, 10), box)
    return image


def b64(image: Image.Image) -> str:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def job(services: Services, **fields: Any) -> tuple[Any, list[np.ndarray]]:
    values = {"prompt": "a red cat", "width": SIZE, "height": SIZE, "steps": 2, "seed": 5, **fields}
    snap = run_and_collect(services.images, services.images.validate(**values))
    assert snap.status == "done", snap.error
    return snap, [np.asarray(Image.open(p).convert("RGB")) for p in snap.files]


def test_tiny_sdxl_is_offered_beside_tiny_sd_and_runs_every_mode(xl_services: Services) -> None:
    assert {"tiny-sd", "tiny-sdxl"} <= set(xl_services.catalog.models())
    assert xl_services.catalog.family("tiny-sdxl") == "sdxl"
    assert xl_services.catalog.family("") == "sd15"  # the tiny profile's default
    snap, (first,) = job(xl_services, model="tiny-sdxl")
    assert first.shape == (SIZE, SIZE, 3)
    text = Image.open(snap.files[0]).info["parameters"]
    assert "Model: tiny-sdxl" in text
    assert xl_services.image_slot.status().details["family"] == "sdxl"
    row = xl_services.history.list_jobs()["jobs"][0]
    assert row["checkpoint"] == "tiny-sdxl"
    mask = Image.new("L", (SIZE, SIZE))
    mask.paste(255, (0, 0, 32, SIZE))
    for fields in ({"mode": "img2img", "init_image": square()}, {"mode": "inpaint", "init_image": square(),
                                                                "mask": mask},
                   {"enable_hr": True, "hr_scale": 1.5, "denoising_strength": 0.6},
                   {"prompt": "a red cat <lora:xl-style:0.8>"}):
        snap, (out,) = job(xl_services, model="tiny-sdxl", **fields)
        assert out.shape[2] == 3, fields
    assert "Lora hashes: \"xl-style" in Image.open(snap.files[0]).info["parameters"] or \
        "Lora hashes: xl-style" in Image.open(snap.files[0]).info["parameters"]


def test_an_sdxl_job_streams_previews(xl_services: Services) -> None:
    previews = []
    req = xl_services.images.validate(prompt="a cat", width=SIZE, height=SIZE, steps=4, seed=2, model="tiny-sdxl")
    snap = run_and_collect(xl_services.images, req, lambda s: previews.append(s.preview))
    assert snap.status == "done", snap.error
    shown = [p for p in previews if p is not None]
    assert shown  # the latent-to-RGB factors are SDXL's (pipelines/preview.py, tests/pipelines/test_preview.py)


def test_a_checkpoint_of_each_family_gives_its_own_pixels_and_a_batch_never_mixes_them(xl_services: Services
                                                                                      ) -> None:
    sd = xl_services.images.validate(prompt="a cat", width=SIZE, height=SIZE, steps=2, seed=3)
    xl = xl_services.images.validate(prompt="a cat", width=SIZE, height=SIZE, steps=2, seed=3, model="tiny-sdxl")
    assert sd.mode_shape() != xl.mode_shape()  # the batcher groups by shape: the families never share a call
    _, (a,) = job(xl_services, prompt="a cat", seed=3)
    _, (b,) = job(xl_services, prompt="a cat", seed=3, model="tiny-sdxl")
    assert not np.array_equal(a, b)


def unit(**fields: Any) -> dict[str, Any]:
    return {"image": b64(square()), "module": "canny", "model": "tiny-cn-sd15", **fields}


def test_a_controlnet_unit_runs_and_is_written_read_back_and_kept(xl_services: Services) -> None:
    _, (plain,) = job(xl_services)
    snap, (controlled,) = job(xl_services, controlnet=[unit()])
    assert not np.array_equal(plain, controlled)  # the control picture changes the pixels
    _, (idle,) = job(xl_services, controlnet=[unit(weight=0)])
    assert np.array_equal(idle, plain)  # weight 0: exactly the picture without ControlNet
    text = Image.open(snap.files[0]).info["parameters"]
    model = next(m for m in xl_services.catalog.controlnets() if m.startswith("tiny-cn-sd15 ["))
    assert (f'ControlNet 0: "Module: canny, Model: {model}, Weight: 1.0, Resize Mode: Crop and Resize, '
            "Processor Res: 512, Threshold A: 100, Threshold B: 200, Guidance Start: 0.0, Guidance End: 1.0, "
            'Pixel Perfect: False, Control Mode: Balanced"') in text
    read = pnginfo.parse(text)
    assert read["controlnet"][0]["module"] == "canny"
    assert read["controlnet"][0]["model"] == model
    assert "ControlNet 0" not in read["extra"]
    # Reused as it was read (a unit's picture is not in a PNG: the panel gets it again), it gives the same job.
    again = xl_services.images.validate(prompt="a red cat", width=SIZE, height=SIZE, steps=2, seed=5,
                                        controlnet=[{**read["controlnet"][0], "image": b64(square())}])
    assert again.controlnet == xl_services.images.validate(prompt="a red cat", width=SIZE, height=SIZE, steps=2,
                                                           seed=5, controlnet=[unit()]).controlnet
    row = xl_services.history.list_jobs()["jobs"][0]
    picture = row["controlnet"][0]["image"]
    assert picture.startswith("inputs/")
    assert xl_services.history.input_key(Path(picture).stem) == picture


@pytest.mark.parametrize(("fields", "field", "words"), [
    ({"image": base64.b64encode(b"hello, not a picture").decode()}, "controlnet.0.image", "send"),
    ({"image": "%%%"}, "controlnet.0.image", "base64"),
    ({"module": "depth_everything_v9"}, "controlnet.0.module", "unknown ControlNet module"),
    ({"model": "nope"}, "controlnet.0.model", "unknown ControlNet model 'nope'; available: tiny-cn-sd15 ["),
    ({"guidance_start": 0.8, "guidance_end": 0.2}, "controlnet.0.guidance_start", "must not be after"),
    ({"weight": 3}, "controlnet.0.weight", "between 0 and 2"),
    ({"model": "tiny-cn-sdxl"}, "controlnet.0.model", "is a ControlNet for SDXL; the checkpoint is Stable Diffusion"),
    ({"control_mode": "Loudest"}, "controlnet.0.control_mode", "control_mode"),
])
def test_bad_units_are_refused_naming_the_field(xl_services: Services, fields: dict[str, Any], field: str,
                                                words: str) -> None:
    errors = xl_services.images.field_errors(prompt="a cat", controlnet=[unit(**fields)])
    assert field in errors, errors
    assert words in errors[field]


def test_bad_unit_lists_and_an_sdxl_lora_on_sd15_are_refused(xl_services: Services) -> None:
    assert "controlnet" in xl_services.images.field_errors(prompt="a cat", controlnet="{not json")
    assert "controlnet" in xl_services.images.field_errors(prompt="a cat", controlnet=[unit()] * 5)
    assert "controlnet.0" in xl_services.images.field_errors(prompt="a cat", controlnet=["canny"])
    errors = xl_services.images.field_errors(prompt="a cat", controlnet=[unit(image=None)])
    assert "image is required in txt2img" in errors["controlnet.0.image"]
    errors = xl_services.images.field_errors(prompt="a cat <lora:xl-style:1>")
    assert "the LoRA 'xl-style' is for SDXL and the checkpoint is Stable Diffusion 1.x" in errors["prompt"]
    assert xl_services.images.field_errors(prompt="a cat <lora:xl-style:1>", model="tiny-sdxl") == {}
    # A path is never read from a unit: only pictures sent in the request.
    errors = xl_services.images.field_errors(prompt="a cat", controlnet=[unit(image={"path": "/etc/passwd"})])
    assert "base64" in errors["controlnet.0.image"]
    json.dumps(errors)  # every message is plain data
