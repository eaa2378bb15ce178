"""Single-file checkpoints configured offline from the shipped configs, A1111's Model hash, VAE choice."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import numpy as np
import pytest

from contracts import ImageRequest
from pipelines.checkpoints import (
    CONFIGS_DIR,
    _vae_to_original,
    clip_tokenizer,
    config_for,
    model_hash,
    write_single_file,
)
from pipelines.diffusers_backend import DiffusersBackend
from pipelines.loading import ModelUnavailable


@pytest.fixture(scope="module")
def checkpoint(tiny_sd_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_single_file(tiny_sd_dir, tmp_path_factory.mktemp("models") / "tiny.safetensors")


def pixels(backend: DiffusersBackend, seed: int = 3) -> np.ndarray:
    backend.load(lambda phase: None)
    req = ImageRequest(prompt="a red cat", width=64, height=64, steps=2)
    (image,) = backend.generate(req, [seed], lambda update: None, threading.Event())
    return np.asarray(image.image)


def test_model_hash_is_a1111s_short_sha256(checkpoint: Path, tiny_sd_dir: Path) -> None:
    assert model_hash(checkpoint) == hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:10]
    assert model_hash(tiny_sd_dir) == ""  # a diffusers folder has no A1111 hash


def test_a_single_file_loads_offline_with_the_folders_pixels(checkpoint: Path, tiny_sd_dir: Path) -> None:
    assert config_for(checkpoint) == CONFIGS_DIR / "tiny-sd"
    from_file = DiffusersBackend(str(checkpoint))
    phases: list[str] = []
    from_file.load(phases.append)
    assert any("hashing" in p for p in phases)
    assert from_file.model_hash == model_hash(checkpoint)
    assert from_file.revision == "sha256:" + hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert np.array_equal(pixels(from_file), pixels(DiffusersBackend(str(tiny_sd_dir))))


def test_a_vae_file_or_folder_replaces_the_checkpoints_own(checkpoint: Path, tiny_sd_dir: Path,
                                                          tmp_path: Path) -> None:
    import json

    from safetensors.torch import load_file, save_file

    # A VAE file as A1111 users download them: the CompVis VAE keys without the "first_stage_model." prefix.
    config = json.loads((tiny_sd_dir / "vae" / "config.json").read_text())
    state = _vae_to_original(load_file(str(tiny_sd_dir / "vae" / "diffusion_pytorch_model.safetensors")), config)
    vae_file = tmp_path / "tiny-vae.safetensors"
    save_file({k.removeprefix("first_stage_model."): v.contiguous() for k, v in state.items()}, str(vae_file))
    base = pixels(DiffusersBackend(str(checkpoint)))
    with_file = DiffusersBackend(str(checkpoint), vae=str(vae_file))
    assert np.array_equal(pixels(with_file), base)  # the same weights, now from the VAE file
    assert "+vae:" in with_file.revision
    assert np.array_equal(pixels(DiffusersBackend(str(checkpoint), vae=str(tiny_sd_dir))), base)


def test_an_unknown_family_gets_a_clear_message(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    sd2_like = tmp_path / "sd21.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3),
               "cond_stage_model.model.token_embedding.weight": torch.zeros(8, 1024)}, str(sd2_like))
    with pytest.raises(ModelUnavailable, match=r"sd21.safetensors.*Stable Diffusion 2.x checkpoint.*sd15, "
                                               r"sd15-inpainting, sdxl.*diffusers folder"):
        config_for(sd2_like)
    odd = tmp_path / "odd.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3)}, str(odd))
    with pytest.raises(ModelUnavailable, match=r"odd.safetensors.*not a checkpoint of a known family"):
        config_for(odd)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelUnavailable, match="could not be read"):
        config_for(broken)
    backend = DiffusersBackend(str(sd2_like))
    with pytest.raises(ModelUnavailable, match="SD 2.x and the SDXL refiner"):
        backend.load(lambda phase: None)


def test_the_sd15_tokenizer_is_rebuilt_offline() -> None:
    tok = clip_tokenizer()
    assert len(tok) == 49408
    # Token ids of openai/clip-vit-large-patch14 (the SD 1.x tokenizer).
    assert tok("a photo of a cat")["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]


def test_the_sd15_configs_describe_sd15(tmp_path: Path) -> None:
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(CONFIGS_DIR / "sd15" / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(CONFIGS_DIR / "sd15" / "vae"))
        text = CLIPTextModel(CLIPTextConfig.from_pretrained(CONFIGS_DIR / "sd15" / "text_encoder"))
    # Parameter counts of Stable Diffusion 1.5's UNet, VAE and CLIP ViT-L/14 text encoder.
    assert sum(p.numel() for p in unet.parameters()) == 859_520_964
    assert sum(p.numel() for p in vae.parameters()) == 83_653_863
    assert sum(p.numel() for p in text.parameters()) == 123_060_480
