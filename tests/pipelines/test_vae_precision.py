"""The VAE in float16: fp16-fix VAEs are found and swapped in, SDXL's own VAE is upcast, a NaN decode is redone in
float32 (a real overflow, made on the CPU by scaling the decoder's first convolution and the latents: the weights
stay within float16, the activations do not)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from pipelines.vae_precision import (
    apply_vae_precision,
    find_fp16_fix,
    is_fp16_fix,
    nan_fallback,
    plan_vae_precision,
)


def test_the_plan_follows_dtype_family_and_what_is_in_the_vae_folder(tmp_path: Path) -> None:
    assert plan_vae_precision(True, torch.float32).action == "none"
    assert plan_vae_precision(True, torch.bfloat16).action == "none"
    assert plan_vae_precision(False, torch.float16).action == "none"
    plan = plan_vae_precision(True, torch.float16, vae_dir=tmp_path)
    assert plan.action == "upcast"
    assert "no fp16-fix VAE" in plan.reason
    (tmp_path / "other.safetensors").write_bytes(b"")
    (tmp_path / "notes-fp16-fix.txt").write_text("not a VAE")
    assert find_fp16_fix(tmp_path) is None
    fix = tmp_path / "sdxl-vae-fp16-fix.safetensors"
    fix.write_bytes(b"")
    plan = plan_vae_precision(True, torch.float16, vae_dir=tmp_path)
    assert (plan.action, plan.vae_path) == ("fp16-fix", fix)
    # A VAE the user chose wins: kept as is when it is an fp16-fix, upcast when not.
    assert plan_vae_precision(True, torch.float16, chosen_vae=str(fix), vae_dir=tmp_path).action == "none"
    chosen = plan_vae_precision(True, torch.float16, chosen_vae=str(tmp_path / "other.safetensors"), vae_dir=tmp_path)
    assert chosen.action == "upcast"
    assert "'other.safetensors' is not an fp16-fix" in chosen.reason


def test_a_folder_says_it_is_fp16_safe_in_its_config(tmp_path: Path) -> None:
    folder = tmp_path / "my-vae"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"force_upcast": True}))
    assert not is_fp16_fix(folder)
    (folder / "config.json").write_text(json.dumps({"force_upcast": False}))
    assert is_fp16_fix(folder)


@pytest.fixture
def overflowing_vae(tiny_sdxl_dir: Path) -> Any:
    """The tiny SDXL VAE with a decoder whose first convolution overflows float16 on LOUD latents."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(str(tiny_sdxl_dir), subfolder="vae")
    _amplify(vae)
    vae.register_to_config(force_upcast=False)
    return vae


def _amplify(vae: Any) -> None:
    with torch.no_grad():
        vae.decoder.conv_in.weight.mul_(1e3)  # at most ~170: still a float16 number


LOUD = 300.0  # latents this large push the amplified activations past float16's 65504


def test_a_nan_decode_is_redone_in_float32(overflowing_vae: Any) -> None:
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * LOUD
    with torch.no_grad():
        reference = overflowing_vae.decode(z).sample
        vae = overflowing_vae.to(torch.float16)
        assert not torch.isfinite(vae.decode(z.half()).sample).all()  # the overflow is real
        with nan_fallback(vae):
            fixed = vae.decode(z.half()).sample
        assert torch.isfinite(fixed).all()
        assert torch.allclose(fixed.float(), reference, atol=1e-3)
    assert vae.dtype == torch.float16  # put back; SDXL pipelines now upcast it themselves
    assert vae.config.force_upcast
    assert "decode" not in vars(vae)  # the method is the class's again


def test_the_fallback_restores_a_wrapper_that_was_in_place(overflowing_vae: Any) -> None:
    calls = []
    original = overflowing_vae.decode

    def outer(z: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(z.shape)
        return original(z, *args, **kwargs)

    overflowing_vae.decode = outer
    with torch.no_grad(), nan_fallback(overflowing_vae):
        overflowing_vae.decode(torch.ones(1, 4, 8, 8) * LOUD)
    assert overflowing_vae.decode is outer
    assert calls


def test_sdxl_in_float16_gives_a_picture_not_nan(tiny_sdxl_dir: Path, tmp_path: Path) -> None:
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(str(tiny_sdxl_dir), torch_dtype=torch.float16)
    pipe.set_progress_bar_config(disable=True)
    _amplify(pipe.vae)
    pipe.vae.register_to_config(force_upcast=False)  # an SDXL VAE that claims to be safe, and is not
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)).half() * LOUD

    def run() -> Any:
        return pipe("a cat", width=64, height=64, num_inference_steps=1, output_type="np", latents=latents,
                    generator=torch.Generator().manual_seed(0)).images[0]

    assert not torch.isfinite(torch.from_numpy(run())).all()
    plan = plan_vae_precision(True, torch.float16, vae_dir=tmp_path)
    apply_vae_precision(pipe, plan, torch.float16)
    image = run()
    assert torch.isfinite(torch.from_numpy(image)).all()
    assert image.std() > 0
    assert pipe.vae.dtype == torch.float16


def test_an_fp16_fix_file_is_swapped_in(tiny_sdxl_dir: Path, tmp_path: Path) -> None:
    from diffusers import StableDiffusionXLPipeline
    from safetensors.torch import load_file, save_file

    from pipelines.checkpoints import CONFIGS_DIR, _vae_to_original

    config = json.loads((tiny_sdxl_dir / "vae" / "config.json").read_text())
    state = _vae_to_original(load_file(str(tiny_sdxl_dir / "vae" / "diffusion_pytorch_model.safetensors")), config)
    fix = tmp_path / "sdxl-vae-fp16-fix.safetensors"
    save_file({k.removeprefix("first_stage_model."): v * 0.5 for k, v in state.items()}, str(fix))
    pipe = StableDiffusionXLPipeline.from_pretrained(str(tiny_sdxl_dir))
    before = pipe.vae
    plan = plan_vae_precision(True, torch.float16, vae_dir=tmp_path)
    apply_vae_precision(pipe, plan, torch.float32, CONFIGS_DIR / "tiny-sdxl")
    assert pipe.vae is not before
    assert not pipe.vae.config.force_upcast
    assert torch.equal(pipe.vae.decoder.conv_in.weight, before.decoder.conv_in.weight * 0.5)
