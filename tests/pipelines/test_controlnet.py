"""ControlNet models from the controlnet folder, and units applied by the UNet hook (pipelines/control_apply.py) in
diffusers' own SD 1.5 and SDXL pipelines on the tiny models, with our prompt embeddings, size conditioning and maps:
the pixels of diffusers' ControlNet pipelines, windows and modes, weight 0 as no ControlNet."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines.control_apply import ControlState, applied_units, controlled_unet, layer_scales
from pipelines.control_units import ControlUnitError, make_unit
from pipelines.controlnet import (
    available_controlnets,
    check_families,
    control_image,
    controlnet_config_for,
    controlnet_family,
    load_controlnet,
)
from pipelines.hashes import legacy_model_hash

STEPS = 2


def square_picture(box: tuple[int, int, int, int] = (16, 16, 48, 48)) -> Image.Image:
    image = Image.new("RGB", (64, 64))
    image.paste((255, 255, 255), box)
    return image


def test_the_legacy_hash_is_a1111s(tmp_path: Path) -> None:
    data = bytes(range(256)) * 5000  # past 1 MiB + 64 KiB
    path = tmp_path / "model.safetensors"
    path.write_bytes(data)
    assert legacy_model_hash(path) == hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8]
    small = tmp_path / "small.bin"
    small.write_bytes(b"tiny")
    assert legacy_model_hash(small) == hashlib.sha256(b"").hexdigest()[:8]


def test_controlnets_are_listed_by_name_and_hash(tiny_cn_sd15: Path, tiny_cn_sdxl: Path, controlnet_dir: Path) -> None:
    (controlnet_dir / "not-a-model").mkdir(exist_ok=True)
    models = available_controlnets(controlnet_dir)
    hash15 = legacy_model_hash(tiny_cn_sd15 / "diffusion_pytorch_model.safetensors")
    assert models == {f"tiny-cn-sd15 [{hash15}]": tiny_cn_sd15,
                      f"tiny-cn-sdxl [{legacy_model_hash(tiny_cn_sdxl / 'diffusion_pytorch_model.safetensors')}]":
                      tiny_cn_sdxl}
    assert available_controlnets(controlnet_dir / "missing") == {}
    unit = make_unit({"module": "canny", "model": "tiny-cn-sdxl"}, models=list(models))
    with pytest.raises(ControlUnitError, match=r"'tiny-cn-sdxl \[\w+\]' is a ControlNet for SDXL; the checkpoint "
                                               r"is Stable Diffusion 1.x: choose a ControlNet made for"):
        check_families([unit], models, "sd15")
    check_families([unit], models, "sdxl-inpaint")


def test_the_tiny_controlnets_zero_convolutions_are_not_zero(tiny_cn_sd15: Path) -> None:
    net = load_controlnet(tiny_cn_sd15, torch.float32)
    assert all(block.weight.abs().sum() > 0 for block in net.controlnet_down_blocks)
    assert net.controlnet_mid_block.weight.abs().sum() > 0


def test_controlnet_files_load_offline_in_either_layout(tiny_cn_sd15: Path, tiny_cn_sdxl: Path,
                                                      tmp_path: Path) -> None:
    import shutil

    from pipelines.checkpoints import CONFIGS_DIR
    from tests.pipelines.tiny_assets import write_controlnet_original

    folder_weights = load_controlnet(tiny_cn_sd15, torch.float32).state_dict()
    files = [write_controlnet_original(tiny_cn_sd15, tmp_path / "control_sd15_tiny.pth"),
             write_controlnet_original(tiny_cn_sd15, tmp_path / "control_sd15_tiny.safetensors")]
    xl_file = tmp_path / "diffusers_xl_tiny.safetensors"  # SDXL ControlNets come in diffusers' layout
    shutil.copyfile(tiny_cn_sdxl / "diffusion_pytorch_model.safetensors", xl_file)
    for file in files:
        assert controlnet_config_for(file) == CONFIGS_DIR / "tiny-controlnet-sd15"
        weights = load_controlnet(file, torch.float32).state_dict()
        assert weights.keys() == folder_weights.keys()
        assert all(torch.equal(weights[k], folder_weights[k]) for k in weights)
    assert controlnet_family(xl_file) == "sdxl"
    assert controlnet_family(files[0]) == "sd15"
    xl_weights = load_controlnet(tiny_cn_sdxl, torch.float32).state_dict()
    assert all(torch.equal(v, xl_weights[k]) for k, v in load_controlnet(xl_file, torch.float32).state_dict().items())
    listed = available_controlnets(tmp_path)
    assert sorted(name.split(" [")[0] for name in listed) == ["control_sd15_tiny", "control_sd15_tiny",
                                                              "diffusers_xl_tiny"]
    odd = tmp_path / "odd.safetensors"
    from safetensors.torch import save_file

    save_file({"conv_in.weight": torch.zeros(96, 4, 3, 3), "x.attn2.to_k.weight": torch.zeros(8, 77)}, str(odd))
    with pytest.raises(ControlUnitError, match=r"'odd.safetensors' is not one Atelier can configure offline.*"
                                               r"controlnet-sd15, controlnet-sdxl"):
        load_controlnet(odd, torch.float32)


def test_the_shipped_controlnet_configs_are_the_unets_controlnets() -> None:
    import json

    from accelerate import init_empty_weights
    from diffusers import ControlNetModel, UNet2DConditionModel

    from pipelines.checkpoints import CONFIGS_DIR

    for name, unet in (("controlnet-sd15", "sd15"), ("controlnet-sdxl", "sdxl"), ("tiny-controlnet-sd15", "tiny-sd"),
                       ("tiny-controlnet-sdxl", "tiny-sdxl")):
        shipped = json.loads((CONFIGS_DIR / name / "config.json").read_text())
        channels = tuple(shipped["conditioning_embedding_out_channels"])
        with init_empty_weights():  # configs only: no memory for SDXL's 2.6 billion weights
            model = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(CONFIGS_DIR / unet / "unet"))
            expected = ControlNetModel.from_unet(model, conditioning_embedding_out_channels=channels,
                                                 load_weights_from_unet=False).config
        assert {k: v for k, v in shipped.items() if not k.startswith("_")} == {
            k: list(v) if isinstance(v, tuple) else v for k, v in expected.items() if not k.startswith("_")}, name
    # lllyasviel's and diffusers' real ControlNets embed the control image with these widths.
    assert json.loads((CONFIGS_DIR / "controlnet-sd15" / "config.json").read_text())[
        "conditioning_embedding_out_channels"] == [16, 32, 96, 256]


def test_the_soft_injection_factors() -> None:
    assert layer_scales("Balanced", 13) == [1.0] * 13
    soft = layer_scales("My prompt is more important", 13)
    assert soft[-1] == 1.0
    assert soft[0] == pytest.approx(0.825 ** 12)
    assert layer_scales("ControlNet is more important", 10) == soft[:10]  # SDXL keeps the first ten


# --- the smoke test: diffusers' pipelines with every piece ---------------------------------------------------------


@pytest.fixture(scope="module")
def sd_pipe(tiny_sd_dir: Path) -> Any:
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_sd_dir), safety_checker=None,
                                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def xl_pipe(tiny_sdxl_dir: Path) -> Any:
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(str(tiny_sdxl_dir))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sd_inputs(pipe: Any) -> dict[str, Any]:
    from pipelines.prompts import encode_prompts

    return encode_prompts(pipe, ["a (red:1.3) cat"], ["ugly"], cfg=True)


def xl_inputs(pipe: Any) -> dict[str, Any]:
    from pipelines.sdxl import encode_prompts, size_conditioning

    return {**encode_prompts(pipe, ["a (red:1.3) cat"], [""], cfg=True), **size_conditioning(64, 64, pipe=pipe)}


def run(pipe: Any, inputs: dict[str, Any], seed: int = 3, **kwargs: Any) -> np.ndarray:
    out = pipe(width=64, height=64, num_inference_steps=STEPS, guidance_scale=7.0, output_type="np",
               generator=torch.Generator().manual_seed(seed), **inputs, **kwargs)
    return out.images[0]


_nets: dict[Path, Any] = {}  # ControlNet folder -> ControlNetModel, loaded once


def net_of(net_dir: Path) -> Any:
    if net_dir not in _nets:
        _nets[net_dir] = load_controlnet(net_dir, torch.float32)
    return _nets[net_dir]


def with_units(pipe: Any, inputs: dict[str, Any], units: list[Any], nets: list[Any], seed: int = 3) -> np.ndarray:
    """The pipeline's picture with `units` applied by the hook, the step callback keeping its step count."""
    state = ControlState(units=applied_units(units, nets, [control_image(u, 64, 64) for u in units]), cfg=True,
                         pipe=pipe)

    def count(p: Any, step: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        state.step = step + 1
        return kwargs

    with controlled_unet(pipe.unet, state):
        return run(pipe, inputs, seed, callback_on_step_end=count)


def controlled(pipe: Any, net_dir: Path, inputs: dict[str, Any], picture: Image.Image | None = None,
               **unit_fields: Any) -> np.ndarray:
    unit = make_unit({"module": "canny", "image": picture or square_picture(), **unit_fields})
    return with_units(pipe, inputs, [unit], [net_of(net_dir)])


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_controlnet_runs_in_diffusers_pipelines_with_our_pieces(family: str, request: pytest.FixtureRequest) -> None:
    pipe = request.getfixturevalue("sd_pipe" if family == "sd15" else "xl_pipe")
    net_dir = request.getfixturevalue("tiny_cn_sd15" if family == "sd15" else "tiny_cn_sdxl")
    inputs = sd_inputs(pipe) if family == "sd15" else xl_inputs(pipe)
    plain = run(pipe, inputs)
    base = controlled(pipe, net_dir, inputs)
    assert "forward" not in vars(pipe.unet)  # the hook is gone after the call
    assert np.array_equal(controlled(pipe, net_dir, inputs), base)  # same seed, same pixels
    assert not np.array_equal(base, plain)  # the control changes the picture...
    other = controlled(pipe, net_dir, inputs, picture=square_picture((4, 30, 60, 40)))
    assert not np.array_equal(other, base)  # ...and another control image changes it again
    assert np.array_equal(controlled(pipe, net_dir, inputs, weight=0.0), plain)  # weight 0: exactly no ControlNet
    # The control modes reach the UNet (their factors are checked above).
    assert not np.array_equal(controlled(pipe, net_dir, inputs, control_mode=2), base)


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_the_hook_gives_the_pixels_of_diffusers_controlnet_pipelines(family: str,
                                                                     request: pytest.FixtureRequest) -> None:
    from diffusers import AutoPipelineForText2Image

    pipe = request.getfixturevalue("sd_pipe" if family == "sd15" else "xl_pipe")
    net_dir = request.getfixturevalue("tiny_cn_sd15" if family == "sd15" else "tiny_cn_sdxl")
    inputs = sd_inputs(pipe) if family == "sd15" else xl_inputs(pipe)
    unit = make_unit({"module": "canny", "image": square_picture(), "weight": 0.7})
    theirs = AutoPipelineForText2Image.from_pipe(pipe, controlnet=net_of(net_dir))
    theirs.set_progress_bar_config(disable=True)
    expected = run(theirs, inputs, image=control_image(unit, 64, 64), controlnet_conditioning_scale=0.7)
    assert np.allclose(with_units(pipe, inputs, [unit], [net_of(net_dir)]), expected, atol=1e-6)


def test_units_windows_and_modes_change_the_steps_they_should(sd_pipe: Any, tiny_cn_sd15: Path) -> None:
    inputs = sd_inputs(sd_pipe)
    plain, base = run(sd_pipe, inputs), controlled(sd_pipe, tiny_cn_sd15, inputs)
    # The tiny model's PNDM runs 2 steps as 3 UNet steps (i/3 = 0, 0.33, 0.67). From half-way (the last) the
    # picture differs from both; a window with no step is no control.
    late = controlled(sd_pipe, tiny_cn_sd15, inputs, guidance_start=0.5)
    assert not np.array_equal(late, base)
    assert not np.array_equal(late, plain)
    assert np.array_equal(controlled(sd_pipe, tiny_cn_sd15, inputs, guidance_start=0.9), plain)
    # The first two steps only: neither the whole control, nor none, nor the last step's.
    early = controlled(sd_pipe, tiny_cn_sd15, inputs, guidance_end=0.4)
    assert not np.array_equal(early, base)
    assert not np.array_equal(early, plain)
    assert not np.array_equal(early, late)
    prompt_first = controlled(sd_pipe, tiny_cn_sd15, inputs, control_mode=1)
    assert not np.array_equal(prompt_first, base)
    assert not np.array_equal(controlled(sd_pipe, tiny_cn_sd15, inputs, control_mode=2), prompt_first)


def test_two_units_add_up_and_a_zero_unit_changes_nothing(sd_pipe: Any, tiny_cn_sd15: Path) -> None:
    inputs = sd_inputs(sd_pipe)
    net = net_of(tiny_cn_sd15)
    one = make_unit({"module": "canny", "image": square_picture()})
    idle = make_unit({"module": "none", "image": square_picture((0, 0, 20, 20)), "weight": 0})
    other = make_unit({"module": "none", "image": square_picture((0, 0, 20, 20)), "weight": 0.5})
    single = controlled(sd_pipe, tiny_cn_sd15, inputs)
    assert np.array_equal(with_units(sd_pipe, inputs, [one, idle], [net, net]), single)
    assert not np.array_equal(with_units(sd_pipe, inputs, [one, other], [net, net]), single)
    with pytest.raises(ValueError, match="2 enabled units, 1 ControlNets"):
        applied_units([one, idle], [net], [square_picture()] * 2)


def test_canny_goes_soft_in_a_hires_pass() -> None:
    canny = make_unit({"module": "canny", "image": square_picture()})
    plain = make_unit({"module": "none", "image": square_picture(), "control_mode": 2})
    first, second = applied_units([canny, plain], [None, None], [square_picture()] * 2, hires=True)
    assert (first.mode, second.mode) == ("My prompt is more important", "ControlNet is more important")
    assert applied_units([canny], [None], [square_picture()])[0].mode == "Balanced"
