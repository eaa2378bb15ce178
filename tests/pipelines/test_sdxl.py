"""SDXL: the tiny model, single files in the original layout loaded offline, A1111 prompt weighting over both text
encoders, size conditioning."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from pipelines.checkpoints import (
    CONFIGS_DIR,
    checkpoint_family,
    config_for,
    load_checkpoint,
    model_hash,
    write_single_file,
)
from pipelines.loading import ModelUnavailable
from pipelines.sdxl import encode_prompts, is_sdxl, size_conditioning


@pytest.fixture(scope="module")
def xl_pipe(tiny_sdxl_dir: Path) -> Any:
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(str(tiny_sdxl_dir))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def pixels(pipe: Any, seed: int = 3, **kwargs: Any) -> np.ndarray:
    kwargs.setdefault("prompt", "a red cat")
    out = pipe(width=64, height=64, num_inference_steps=2, generator=torch.Generator().manual_seed(seed),
               output_type="np", **kwargs)
    return out.images[0]


def test_the_tiny_sdxl_is_wired_like_sdxl(xl_pipe: Any) -> None:
    assert is_sdxl(xl_pipe)
    assert xl_pipe.unet.config.addition_embed_type == "text_time"
    # The UNet reads both encoders side by side and the second's projection plus six size numbers.
    widths = xl_pipe.text_encoder.config.hidden_size, xl_pipe.text_encoder_2.config.hidden_size
    assert xl_pipe.unet.config.cross_attention_dim == sum(widths)
    assert widths[0] != widths[1]  # diffusers' single-file loader tells the encoders apart by width
    assert xl_pipe.tokenizer_2.pad_token_id == 0 != xl_pipe.tokenizer.pad_token_id
    assert xl_pipe.vae.config.force_upcast
    assert xl_pipe.config.force_zeros_for_empty_prompt


def _config_files(folder: Path) -> dict[str, Any]:
    out = {}
    for f in sorted(folder.rglob("*")):
        if f.suffix == ".json" and f.name not in ("atelier-tiny.json", "tokenizer.json"):
            data = json.loads(f.read_text())
            data.pop("_name_or_path", None)
            out[str(f.relative_to(folder))] = data
        elif f.suffix == ".txt":
            out[str(f.relative_to(folder))] = f.read_text()
    return out


def test_the_shipped_tiny_configs_are_what_the_builder_writes(tiny_sdxl_dir: Path, tiny_xl_root: Path) -> None:
    from pipelines.tiny import ensure_tiny_sdxl_inpaint

    assert _config_files(CONFIGS_DIR / "tiny-sdxl") == _config_files(tiny_sdxl_dir)
    inpaint = ensure_tiny_sdxl_inpaint(tiny_xl_root / "tiny-sdxl-inpaint")
    assert _config_files(CONFIGS_DIR / "tiny-sdxl-inpainting") == _config_files(inpaint)


def test_the_sdxl_configs_describe_sdxl() -> None:
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    counts = {}
    for name in ("sdxl", "sdxl-inpainting"):
        folder = CONFIGS_DIR / name
        with init_empty_weights():
            models = (UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet")),
                      AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae")),
                      CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder")),
                      CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(folder / "text_encoder_2")))
        counts[name] = [sum(p.numel() for p in m.parameters()) for m in models]
    # Parameter counts of SDXL 1.0 base's UNet, VAE, CLIP ViT-L and OpenCLIP ViT-bigG (with its projection); the
    # inpainting UNet takes 5 more input channels (5 × 320 × 3 × 3 weights).
    assert counts["sdxl"] == [2_567_463_684, 83_653_863, 123_060_480, 694_659_840]
    assert counts["sdxl-inpainting"] == [2_567_463_684 + 5 * 320 * 9, 83_653_863, 123_060_480, 694_659_840]
    assert json.loads((CONFIGS_DIR / "sdxl" / "vae" / "config.json").read_text())["scaling_factor"] == 0.13025


def test_an_sdxl_single_file_loads_offline_with_the_folders_pixels(xl_pipe: Any, tiny_sdxl_file: Path) -> None:
    from safetensors import safe_open

    with safe_open(str(tiny_sdxl_file), framework="pt") as f:
        keys = set(f.keys())
    # The original layout: sgm's conditioner with CLIP-L as embedder 0 and OpenCLIP-G (fused q/k/v) as embedder 1.
    assert "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight" in keys
    assert "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight" in keys
    assert "model.diffusion_model.label_emb.0.0.weight" in keys
    assert not any(k.startswith(("unet.", "text_encoder")) for k in keys)
    assert checkpoint_family(tiny_sdxl_file) == "sdxl"
    assert config_for(tiny_sdxl_file) == CONFIGS_DIR / "tiny-sdxl"
    assert model_hash(tiny_sdxl_file) == hashlib.sha256(tiny_sdxl_file.read_bytes()).hexdigest()[:10]
    pipe = load_checkpoint(tiny_sdxl_file, torch.float32)
    pipe.set_progress_bar_config(disable=True)
    assert type(pipe).__name__ == "StableDiffusionXLPipeline"
    assert pipe.watermark is None  # no invisible watermark, as in A1111
    assert np.array_equal(pixels(pipe), pixels(xl_pipe))


def test_the_family_is_told_from_the_keys(tiny_xl_root: Path, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from pipelines.tiny import ensure_tiny_sdxl_inpaint

    inpaint = write_single_file(ensure_tiny_sdxl_inpaint(tiny_xl_root / "tiny-sdxl-inpaint"),
                                tmp_path / "inpaint.safetensors")
    assert checkpoint_family(inpaint) == "sdxl-inpaint"
    assert config_for(inpaint) == CONFIGS_DIR / "tiny-sdxl-inpainting"
    refiner = tmp_path / "refiner.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(384, 4, 3, 3),
               "conditioner.embedders.0.model.token_embedding.weight": torch.zeros(8, 1280)}, str(refiner))
    assert checkpoint_family(refiner) == "sdxl-refiner"
    with pytest.raises(ModelUnavailable, match=r"refiner.safetensors.*SDXL refiner checkpoint.*diffusers folder"):
        config_for(refiner)
    # Real SDXL shapes pick the shipped SDXL config (no weights needed to tell).
    real = tmp_path / "sdxl-like.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 4, 1, 1),
               "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight": torch.zeros(1, 768),
               "conditioner.embedders.1.model.token_embedding.weight": torch.zeros(1, 1280)}, str(real))
    assert config_for(real) == CONFIGS_DIR / "sdxl"


# --- prompts -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("negative", ["ugly", ""])
def test_a_plain_prompt_gives_diffusers_own_embeddings(xl_pipe: Any, negative: str) -> None:
    # diffusers zeroes the negative when none is given (force_zeros_for_empty_prompt); A1111 when it is empty.
    theirs = xl_pipe.encode_prompt("a cat on the moon", device="cpu", num_images_per_prompt=1,
                                   do_classifier_free_guidance=True, negative_prompt=negative or None)
    ours = encode_prompts(xl_pipe, ["a cat on the moon"], [negative], cfg=True)
    names = ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds")
    for name, expected in zip(names, theirs, strict=True):
        assert torch.equal(ours[name], expected), name
    if not negative:
        assert not ours["negative_prompt_embeds"].any()
        assert not ours["negative_pooled_prompt_embeds"].any()


def test_weights_apply_to_each_encoder_and_leave_the_pooled_embedding(xl_pipe: Any) -> None:
    plain = encode_prompts(xl_pipe, ["a cat"], [], cfg=False)
    weighted = encode_prompts(xl_pipe, ["a (cat:1.5)"], [], cfg=False)
    width_l = xl_pipe.text_encoder.config.hidden_size
    for part in (slice(0, width_l), slice(width_l, None)):  # CLIP-L's half, then OpenCLIP-G's
        p, w = plain["prompt_embeds"][..., part], weighted["prompt_embeds"][..., part]
        assert not torch.equal(p, w)
        # Each encoder's chunk is brought back to its own mean, as A1111 weights each embedder on its own.
        assert w.mean().item() == pytest.approx(p.mean().item(), abs=1e-6)
    assert torch.equal(plain["pooled_prompt_embeds"], weighted["pooled_prompt_embeds"])


def test_long_prompts_and_break_make_chunks_and_rows_are_padded(xl_pipe: Any) -> None:
    long = " ".join(["a"] * 100)
    out = encode_prompts(xl_pipe, [long, "a dog"], ["", "ugly"], cfg=True)
    width = xl_pipe.unet.config.cross_attention_dim
    assert out["prompt_embeds"].shape == out["negative_prompt_embeds"].shape == (2, 154, width)
    # The pooled embedding is the first chunk's (A1111), the same as the prompt's first 75 tokens alone.
    first = encode_prompts(xl_pipe, [" ".join(["a"] * 75)], [], cfg=False)
    assert torch.equal(out["pooled_prompt_embeds"][:1], first["pooled_prompt_embeds"])
    empty = encode_prompts(xl_pipe, [""], [], cfg=False)["prompt_embeds"]
    assert torch.equal(out["prompt_embeds"][1:, 77:], empty)  # a short prompt is padded with the empty prompt
    assert torch.equal(out["negative_prompt_embeds"][1:, 77:], empty)
    assert not out["negative_prompt_embeds"][0].any()  # a zeroed negative stays zeros
    assert encode_prompts(xl_pipe, ["cat BREAK dog"], [], cfg=False)["prompt_embeds"].shape[1] == 154


def test_the_embeddings_drive_the_pipeline_like_its_own_prompt(xl_pipe: Any) -> None:
    embeds = encode_prompts(xl_pipe, ["a red cat"], ["ugly"], cfg=True)
    assert np.array_equal(pixels(xl_pipe, prompt=None, **embeds), pixels(xl_pipe, negative_prompt="ugly"))


# --- size conditioning ---------------------------------------------------------------------------------------------


def test_size_conditioning_is_a1111s(xl_pipe: Any) -> None:
    kwargs = size_conditioning(96, 64)
    assert kwargs["original_size"] == kwargs["target_size"] == (64, 96)  # (height, width)
    assert kwargs["crops_coords_top_left"] == (0, 0)
    assert kwargs["negative_original_size"] == (64, 96)
    assert kwargs["negative_crops_coords_top_left"] == (0, 0)
    # A1111's conditioning for txt2img is diffusers' default: the same pixels.
    assert np.array_equal(pixels(xl_pipe, **size_conditioning(64, 64, pipe=xl_pipe)), pixels(xl_pipe))
    # ...and the numbers reach the UNet: another crop gives other pixels.
    cropped = pixels(xl_pipe, **size_conditioning(64, 64, crop_top=256, crop_left=256, pipe=xl_pipe))
    assert not np.array_equal(cropped, pixels(xl_pipe))
    with pytest.raises(ValueError, match="positive width and height"):
        size_conditioning(0, 64)
    with pytest.raises(ValueError, match="must not be negative"):
        size_conditioning(64, 64, crop_top=-1)


def test_size_conditioning_fits_each_pipelines_call(xl_pipe: Any) -> None:
    from diffusers import StableDiffusionXLControlNetInpaintPipeline, StableDiffusionXLImg2ImgPipeline

    class Refiner:  # what size_conditioning reads of a pipeline: its config and its __call__
        config = type("Config", (), {"requires_aesthetics_score": True})()
        __call__ = StableDiffusionXLImg2ImgPipeline.__call__

    refiner = size_conditioning(64, 64, pipe=Refiner())
    assert (refiner["aesthetic_score"], refiner["negative_aesthetic_score"]) == (6.0, 2.5)
    assert "aesthetic_score" not in size_conditioning(64, 64, pipe=xl_pipe)

    class ControlInpaint:
        config = type("Config", (), {})()
        __call__ = StableDiffusionXLControlNetInpaintPipeline.__call__

    assert "negative_original_size" not in size_conditioning(64, 64, pipe=ControlInpaint())
