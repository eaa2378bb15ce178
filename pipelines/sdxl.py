"""Stable Diffusion XL as AUTOMATIC1111 runs it: prompt weighting over both text encoders, and size conditioning.

**Prompts.** SDXL's UNet reads the penultimate hidden states of two text encoders side by side (CLIP ViT-L, 768
wide, and OpenCLIP ViT-bigG, 1280 wide: 2048 per token) and, through its added embedding, the pooled and projected
output of the second. A1111 (modules/sd_hijack_clip.py, sd_hijack_open_clip.py, sd_models_xl.py) wraps each
encoder on its own: the prompt is split into the same 75-token chunks (BREAK, the comma backtrack; see
pipelines/prompts.py), every chunk goes through each encoder, each encoder's hidden states get the "Original"
emphasis (weights, then the chunk's mean restored) separately, and the two are joined along the width. The pooled
embedding is the second encoder's of the first chunk, never weighted. An empty negative prompt is not encoded at
all: its embeddings and pooled embedding are zeros (sgm's ``force_zero_embeddings``, the same as diffusers'
``force_zeros_for_empty_prompt`` with no negative prompt). A plain prompt of up to 75 tokens gives exactly the
embeddings of diffusers' own ``StableDiffusionXLPipeline.encode_prompt``.

**Size conditioning.** A1111 conditions on ``original_size = target_size = (height, width)`` of the image being
made (the hires fix's second pass: the upscaled size) and ``crops_coords_top_left = (sdxl_crop_top,
sdxl_crop_left)``, settings that default to (0, 0); the negative prompt gets the same. It writes none of them into
the infotext (nor does it read them back), so neither does Atelier. The refiner's aesthetic scores (6.0 for the
prompt, 2.5 for the negative: A1111's ``sdxl_refiner_high/low_aesthetic_score``) are diffusers' defaults too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipelines.prompts import chunk_tokens, emphasize

# A1111's defaults for the refiner's aesthetic-score conditioning (Settings > Stable Diffusion XL).
REFINER_HIGH_AESTHETIC = 6.0
REFINER_LOW_AESTHETIC = 2.5


def is_sdxl(pipe: Any) -> bool:
    """True for an SDXL pipeline (any task, with or without ControlNet): a UNet with the text_time embedding."""
    unet = getattr(pipe, "unet", None)
    return unet is not None and getattr(unet.config, "addition_embed_type", None) == "text_time"


def pipeline_family(pipe: Any) -> str:
    """The family a loaded pipeline belongs to: "sdxl", "sd2" (OpenCLIP-H, 1024 wide) or "sd15"."""
    if is_sdxl(pipe):
        return "sdxl"
    unet = getattr(pipe, "unet", None)
    return "sd2" if getattr(getattr(unet, "config", None), "cross_attention_dim", None) == 1024 else "sd15"


def _encode_one(encoder: Any, chunk: tuple[list[int], list[float]], device: Any) -> tuple[Any, Any]:
    """One chunk through one encoder: its weighted penultimate hidden states, and its first output (the projected
    pooled embedding for CLIPTextModelWithProjection)."""
    import torch

    tokens, weights = chunk
    out = encoder(torch.tensor([tokens], device=device), output_hidden_states=True)
    return emphasize(out.hidden_states[-2], weights), out[0]


def encode_text(pipe: Any, text: str) -> tuple[Any, Any]:
    """(hidden states 1×(77·chunks)×width, pooled 1×projection) of one prompt through both encoders, A1111's way."""
    import torch

    device = pipe._execution_device
    per_encoder = [chunk_tokens(tok, text) for tok in (pipe.tokenizer, pipe.tokenizer_2)]
    # The two tokenizers share CLIP's vocabulary, so their chunks line up; should they not, the shorter gets empty
    # chunks, as A1111 pads the rows of a batch.
    count = max(len(c) for c in per_encoder)
    for tokenizer, chunks in zip((pipe.tokenizer, pipe.tokenizer_2), per_encoder, strict=True):
        chunks += chunk_tokens(tokenizer, "") * (count - len(chunks))
    parts, pooled = [], None
    for first, second in zip(*per_encoder, strict=True):
        z1, _ = _encode_one(pipe.text_encoder, first, device)
        z2, pooled2 = _encode_one(pipe.text_encoder_2, second, device)
        pooled = pooled2 if pooled is None else pooled
        parts.append(torch.cat([z1, z2.to(z1.dtype)], dim=-1))
    return torch.cat(parts, dim=1), pooled


@dataclass
class _Row:
    embeds: Any
    pooled: Any
    zero: bool  # an empty negative prompt: zeros, padded with zeros


def _pad(rows: list[_Row], empty: Any) -> list[Any]:
    """Every row's embeddings at the longest row's chunk count: the empty prompt's chunk appended (zeros for a
    zeroed negative, whose attention is the same over any number of zero tokens)."""
    import torch

    longest = max(r.embeds.shape[1] for r in rows)
    out = []
    for r in rows:
        missing = (longest - r.embeds.shape[1]) // empty.shape[1]
        fill = torch.zeros_like(empty) if r.zero else empty
        out.append(torch.cat([r.embeds, *[fill] * missing], dim=1))
    return out


def encode_prompts(pipe: Any, prompts: list[str], negatives: list[str], cfg: bool) -> dict[str, Any]:
    """``prompt_embeds``, ``pooled_prompt_embeds`` (and with CFG ``negative_prompt_embeds``,
    ``negative_pooled_prompt_embeds``) for an SDXL pipeline, one prompt at a time; the texts are A1111 syntax with
    the <lora:…> tags already taken out."""
    import torch

    rows: list[_Row] = []
    with torch.no_grad():
        for i, text in enumerate(prompts + (negatives if cfg else [])):
            embeds, pooled = encode_text(pipe, text)
            zero = i >= len(prompts) and text == ""
            if zero:
                embeds, pooled = torch.zeros_like(embeds), torch.zeros_like(pooled)
            rows.append(_Row(embeds, pooled, zero))
        same = len({r.embeds.shape[1] for r in rows}) == 1
        embeds = [r.embeds for r in rows] if same else _pad(rows, encode_text(pipe, "")[0])
    dtype = pipe.text_encoder_2.dtype
    n = len(prompts)
    out = {"prompt_embeds": torch.cat(embeds[:n]).to(dtype),
           "pooled_prompt_embeds": torch.cat([r.pooled for r in rows[:n]]).to(dtype)}
    if cfg:
        out["negative_prompt_embeds"] = torch.cat(embeds[n:]).to(dtype)
        out["negative_pooled_prompt_embeds"] = torch.cat([r.pooled for r in rows[n:]]).to(dtype)
    return out


def size_conditioning(width: int, height: int, crop_top: int = 0, crop_left: int = 0,
                      pipe: Any = None) -> dict[str, Any]:
    """The keyword arguments of a diffusers SDXL pipeline call that condition it as A1111 does for an image of
    ``width``×``height``: original and target size both (height, width), the crop (top, left), the same for the
    negative prompt, and for a refiner (``requires_aesthetics_score``) A1111's aesthetic scores. Given ``pipe``, only
    the arguments its ``__call__`` takes (the SDXL ControlNet inpaint pipeline has no negative sizes)."""
    import inspect

    size, crop = (int(height), int(width)), (int(crop_top), int(crop_left))
    if size[0] <= 0 or size[1] <= 0:
        raise ValueError(f"size conditioning needs a positive width and height, got {width}x{height}")
    if crop[0] < 0 or crop[1] < 0:
        raise ValueError(f"the crop coordinates must not be negative, got top {crop_top}, left {crop_left}")
    out: dict[str, Any] = {"original_size": size, "target_size": size, "crops_coords_top_left": crop,
                           "negative_original_size": size, "negative_target_size": size,
                           "negative_crops_coords_top_left": crop}
    if pipe is None:
        return out
    if getattr(pipe.config, "requires_aesthetics_score", False):
        out.update(aesthetic_score=REFINER_HIGH_AESTHETIC, negative_aesthetic_score=REFINER_LOW_AESTHETIC)
    accepted = inspect.signature(type(pipe).__call__).parameters
    return {k: v for k, v in out.items() if k in accepted}
