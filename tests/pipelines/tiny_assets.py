"""Files built from the tiny model for the LoRA and checkpoint tests: a peft LoRA and a single-file checkpoint."""

from __future__ import annotations

import os
from pathlib import Path


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
