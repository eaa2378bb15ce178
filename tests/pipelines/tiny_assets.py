"""Files built from the tiny model for the LoRA and checkpoint tests: a peft LoRA and a single-file checkpoint."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def make_tiny_lora(tiny_sd_dir: Path, dest: Path, seed: int = 0) -> Path:
    """A LoRA for the tiny UNet's attention layers, made with peft (random, non-zero B so it changes pixels) and
    saved the way diffusers' trainers save one (pytorch_lora_weights.safetensors), renamed to `dest`."""
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet = UNet2DConditionModel.from_pretrained(str(tiny_sd_dir), subfolder="unet")
    torch.manual_seed(seed)
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights=False,
                                target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    out = dest.parent / f".{dest.stem}-build"
    StableDiffusionPipeline.save_lora_weights(str(out), unet_lora_layers=get_peft_model_state_dict(unet),
                                              safe_serialization=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(out / "pytorch_lora_weights.safetensors", dest)
    out.rmdir()
    return dest


def write_controlnet_original(folder: Path, dest: Path) -> Path:
    """A diffusers ControlNet folder as lllyasviel's original single file (``control_model.`` keys, the UNet's
    CompVis names, ``input_hint_block``, ``zero_convs``, ``middle_block_out``); a .pth is written with torch.save."""
    import json

    import torch
    from safetensors.torch import load_file, save_file

    from pipelines.checkpoints import _unet_to_original

    config = json.loads((folder / "config.json").read_text())
    state = load_file(str(folder / "diffusion_pytorch_model.safetensors"))
    hint_blocks = 2 * (len(config["conditioning_embedding_out_channels"]) - 1)
    renames = {"controlnet_cond_embedding.conv_in.": "input_hint_block.0.",
               "controlnet_cond_embedding.conv_out.": f"input_hint_block.{2 * (hint_blocks + 1)}.",
               "controlnet_mid_block.": "middle_block_out.0."}
    renames.update({f"controlnet_cond_embedding.blocks.{j}.": f"input_hint_block.{2 * (j + 1)}."
                    for j in range(hint_blocks)})
    renames.update({f"controlnet_down_blocks.{i}.": f"zero_convs.{i}.0." for i in range(len(state))})
    out, unet_part = {}, {}
    for key, value in state.items():
        prefix = next((p for p in renames if key.startswith(p)), None)
        if prefix is None:
            unet_part[key] = value
        else:
            out["control_model." + renames[prefix] + key[len(prefix):]] = value
    unet_config = {**config, "up_block_types": []}  # a ControlNet has the UNet's down half only
    out.update({"control_model." + k.removeprefix("model.diffusion_model."): v
                for k, v in _unet_to_original(unet_part, unet_config).items()})
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.suffix == ".pth":
        torch.save(out, dest)
    else:
        save_file({k: v.contiguous() for k, v in out.items()}, str(dest))
    return dest


def make_tiny_sdxl_lora(tiny_sdxl_dir: Path, dest: Path, layout: str = "diffusers", seed: int = 0) -> Path:
    """A LoRA for the tiny SDXL's UNet and both text encoders (random, non-zero B), in diffusers' layout (as its
    trainers save one) or in kohya's, which A1111 reads: ``lora_unet_`` keys with the original (sgm) block names,
    ``lora_te1_`` / ``lora_te2_`` for the two text encoders, ``lora_down`` / ``lora_up`` and an ``alpha`` each."""
    import json

    import torch
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from pipelines.checkpoints import _unet_key_map

    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_pretrained(str(tiny_sdxl_dir), subfolder="unet")
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights=False,
                                target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    encoders = [CLIPTextModel.from_pretrained(str(tiny_sdxl_dir), subfolder="text_encoder"),
                CLIPTextModelWithProjection.from_pretrained(str(tiny_sdxl_dir), subfolder="text_encoder_2")]
    for encoder in encoders:
        encoder.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights=False,
                                       target_modules=["q_proj", "k_proj", "v_proj", "out_proj"]))
    parts = [get_peft_model_state_dict(m) for m in (unet, *encoders)]
    dest.parent.mkdir(parents=True, exist_ok=True)
    if layout == "diffusers":
        out = dest.parent / f".{dest.stem}-build"
        StableDiffusionXLPipeline.save_lora_weights(str(out), unet_lora_layers=parts[0],
                                                    text_encoder_lora_layers=parts[1],
                                                    text_encoder_2_lora_layers=parts[2], safe_serialization=True)
        os.replace(out / "pytorch_lora_weights.safetensors", dest)
        out.rmdir()
        return dest
    config = json.loads((tiny_sdxl_dir / "unet" / "config.json").read_text())
    blocks = sorted(_unet_key_map(config), key=lambda p: -len(p[1]))
    kohya: dict[str, Any] = {}
    for prefix, state in zip(("lora_unet_", "lora_te1_", "lora_te2_"), parts, strict=True):
        for key, value in state.items():
            module, kind = key.rsplit(".lora_", 1)
            if prefix == "lora_unet_":
                original = next((o + module[len(d):] for o, d in blocks if module.startswith(d)), module)
                module = original
            name = prefix + module.replace(".", "_")
            kohya[f"{name}.lora_{'down' if kind.startswith('A') else 'up'}.weight"] = value.contiguous()
            kohya[f"{name}.alpha"] = torch.tensor(4.0)
    save_file(kohya, str(dest))
    return dest
