"""Checkpoints from ``<data>/models``: single ``.safetensors`` / ``.ckpt`` files (the format of the model sites and
AUTOMATIC1111) and diffusers folders; VAEs from ``<data>/vae``; A1111's ``Model hash``.

A single-file checkpoint carries weights only. Its pipeline is configured offline from the diffusers configs
shipped under ``pipelines/configs/``: Stable Diffusion 1.x (``sd15``), its 9-channel inpainting variant
(``sd15-inpainting``) and Atelier's tiny model (``tiny-sd``), picked by the shapes of the checkpoint's tensors.
Nothing is downloaded: other families (SD 2.x, SDXL) get a message asking for a diffusers folder instead.
"""

from __future__ import annotations

import gzip
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from pipelines.hashes import sha256
from pipelines.loading import ModelUnavailable

CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt")
VAE_SUFFIXES = (".safetensors", ".ckpt", ".pt")
CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
# The checkpoint key that tells the families apart: the UNet's first convolution (out channels, in channels).
CONV_IN = "model.diffusion_model.input_blocks.0.0.weight"
TEXT_EMBED = "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"


def is_checkpoint_file(path: str | Path) -> bool:
    """True for an existing single-file checkpoint (.safetensors or .ckpt)."""
    p = Path(path).expanduser()
    return p.is_file() and p.suffix.lower() in CHECKPOINT_SUFFIXES


def is_diffusers_folder(path: str | Path) -> bool:
    """True for a diffusers pipeline folder (one with model_index.json)."""
    return (Path(path).expanduser() / "model_index.json").is_file()


def model_hash(path: str | Path) -> str:
    """A1111's ``Model hash``: the first 10 hex digits of the checkpoint file's SHA-256; '' for a folder."""
    p = Path(path).expanduser()
    return sha256(p)[:10] if p.is_file() else ""


def file_revision(path: str | Path) -> str:
    """A checkpoint file's identity for the result cache: its full SHA-256."""
    return "sha256:" + sha256(Path(path).expanduser())


def _shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Shapes of the tensors that pick a config, read without loading the weights where the format allows."""
    wanted = (CONV_IN, TEXT_EMBED)
    if path.suffix.lower() == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
            return {k: tuple(f.get_slice(k).get_shape()) for k in wanted if k in keys}
    import torch

    data = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    data = data.get("state_dict", data)
    return {k: tuple(data[k].shape) for k in wanted if k in data}


def _config_shapes(folder: Path) -> tuple[tuple[int, int], int]:
    unet = json.loads((folder / "unet" / "config.json").read_text())
    text = json.loads((folder / "text_encoder" / "config.json").read_text())
    return (unet["block_out_channels"][0], unet["in_channels"]), text["hidden_size"]


def shipped_configs() -> list[str]:
    """Names of the configs under pipelines/configs that single-file checkpoints can use."""
    return sorted(p.name for p in CONFIGS_DIR.iterdir() if (p / "model_index.json").is_file())


def config_for(path: str | Path) -> Path:
    """The shipped config folder whose UNet and text encoder match the checkpoint's tensors."""
    p = Path(path).expanduser()
    try:
        shapes = _shapes(p)
    except Exception as err:
        raise ModelUnavailable(f"The checkpoint {p.name!r} could not be read ({type(err).__name__}: {err}); "
                               "it may be incomplete or not a Stable Diffusion checkpoint.") from err
    conv, embed = shapes.get(CONV_IN), shapes.get(TEXT_EMBED)
    for name in shipped_configs():
        (channels, in_channels), hidden = _config_shapes(CONFIGS_DIR / name)
        if conv is not None and embed is not None and conv[:2] == (channels, in_channels) and embed[1] == hidden:
            return CONFIGS_DIR / name
    raise ModelUnavailable(
        f"The checkpoint {p.name!r} is not one Atelier can configure offline (it ships configs for: "
        f"{', '.join(shipped_configs())}; SD 2.x and SDXL single files are not among them). "
        "Convert it to a diffusers folder and put that folder in the models directory instead.")


@lru_cache(maxsize=1)
def _clip_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """OpenAI CLIP's BPE vocabulary, rebuilt from its merges (configs/clip/merges.txt.gz, MIT licence) the way
    CLIP's own tokenizer builds it: the bytes, the bytes as word ends, one token per merge, the two specials."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    lines = gzip.decompress((CONFIGS_DIR / "clip" / "merges.txt.gz").read_bytes()).decode("utf-8").splitlines()
    merges = [tuple(line.split()) for line in lines[1:] if line]
    chars = list(bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges] + ["<|startoftext|>",
                                                                                 "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, merges  # type: ignore[return-value]


def clip_tokenizer() -> Any:
    """The CLIP ViT-L/14 tokenizer Stable Diffusion 1.x uses, built offline."""
    from transformers import CLIPTokenizer

    vocab, merges = _clip_vocab_and_merges()
    return CLIPTokenizer(vocab=dict(vocab), merges=list(merges), model_max_length=77)


def load_checkpoint(path: str | Path, dtype: Any) -> Any:
    """A diffusers pipeline from a single-file checkpoint, configured from the shipped config; no network."""
    import diffusers

    p = Path(path).expanduser()
    config = config_for(p)
    cls = getattr(diffusers, json.loads((config / "model_index.json").read_text())["_class_name"])
    extra: dict[str, Any] = {}
    if not (config / "tokenizer" / "vocab.json").is_file():
        extra["tokenizer"] = clip_tokenizer()
    # No safety checker, like AUTOMATIC1111 (and like folders loaded by the backend).
    return cls.from_single_file(str(p), config=str(config), local_files_only=True, torch_dtype=dtype,
                                safety_checker=None, feature_extractor=None, requires_safety_checker=False, **extra)


def load_vae(path: str | Path, dtype: Any, config: Path | None = None) -> Any:
    """An AutoencoderKL from a VAE file (configured like the checkpoint's VAE) or a diffusers VAE folder."""
    from diffusers import AutoencoderKL

    p = Path(path).expanduser()
    if p.is_dir():
        sub = "vae" if (p / "vae" / "config.json").is_file() else None
        return AutoencoderKL.from_pretrained(str(p), subfolder=sub, torch_dtype=dtype, local_files_only=True)
    return AutoencoderKL.from_single_file(str(p), config=str(config or CONFIGS_DIR / "sd15"), subfolder="vae",
                                          torch_dtype=dtype, local_files_only=True)


# --- writing single files (the tiny profile and tests build one from a diffusers folder) ----------------------


def _unet_key_map(unet_config: dict[str, Any]) -> list[tuple[str, str]]:
    """(original, diffusers) key prefixes of a UNet2DConditionModel in the CompVis layout, for any block count."""
    pairs = [("time_embed.0.", "time_embedding.linear_1."), ("time_embed.2.", "time_embedding.linear_2."),
             ("input_blocks.0.0.", "conv_in."), ("out.0.", "conv_norm_out."), ("out.2.", "conv_out.")]
    layers = unet_config["layers_per_block"]
    downs, ups = unet_config["down_block_types"], unet_config["up_block_types"]
    for i, kind in enumerate(downs):
        for j in range(layers):
            pairs.append((f"input_blocks.{(layers + 1) * i + j + 1}.0.", f"down_blocks.{i}.resnets.{j}."))
            if "CrossAttn" in kind:
                pairs.append((f"input_blocks.{(layers + 1) * i + j + 1}.1.", f"down_blocks.{i}.attentions.{j}."))
        if i < len(downs) - 1:
            pairs.append((f"input_blocks.{(layers + 1) * (i + 1)}.0.op.", f"down_blocks.{i}.downsamplers.0.conv."))
    for i, kind in enumerate(ups):
        for j in range(layers + 1):
            pairs.append((f"output_blocks.{(layers + 1) * i + j}.0.", f"up_blocks.{i}.resnets.{j}."))
            if "CrossAttn" in kind:
                pairs.append((f"output_blocks.{(layers + 1) * i + j}.1.", f"up_blocks.{i}.attentions.{j}."))
        if i < len(ups) - 1:
            slot = 2 if "CrossAttn" in kind else 1
            pairs.append((f"output_blocks.{(layers + 1) * i + layers}.{slot}.", f"up_blocks.{i}.upsamplers.0."))
    pairs += [("middle_block.0.", "mid_block.resnets.0."), ("middle_block.1.", "mid_block.attentions.0."),
              ("middle_block.2.", "mid_block.resnets.1.")]
    return pairs


_RESNET = [("in_layers.0", "norm1"), ("in_layers.2", "conv1"), ("out_layers.0", "norm2"), ("out_layers.3", "conv2"),
           ("emb_layers.1", "time_emb_proj"), ("skip_connection", "conv_shortcut")]


def _unet_to_original(state: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    prefixes = sorted(_unet_key_map(config), key=lambda p: -len(p[1]))
    out = {}
    for key, value in state.items():
        new = key
        for original, ours in prefixes:
            if key.startswith(ours):
                rest = key[len(ours):]
                if ".resnets." in ours:
                    for a, b in _RESNET:
                        rest = rest.replace(b, a)
                new = original + rest
                break
        out["model.diffusion_model." + new] = value
    return out


def _vae_to_original(state: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    blocks, layers = len(config["block_out_channels"]), config["layers_per_block"]
    pairs = [("nin_shortcut", "conv_shortcut"), ("norm_out", "conv_norm_out"),
             ("mid.attn_1.", "mid_block.attentions.0.")]
    for i in range(blocks):
        pairs += [(f"encoder.down.{i}.block.{j}.", f"encoder.down_blocks.{i}.resnets.{j}.") for j in range(layers)]
        pairs += [(f"decoder.up.{blocks - 1 - i}.block.{j}.", f"decoder.up_blocks.{i}.resnets.{j}.")
                  for j in range(layers + 1)]
        if i < blocks - 1:
            pairs += [(f"down.{i}.downsample.", f"down_blocks.{i}.downsamplers.0."),
                      (f"up.{blocks - 1 - i}.upsample.", f"up_blocks.{i}.upsamplers.0.")]
    pairs += [(f"mid.block_{i + 1}.", f"mid_block.resnets.{i}.") for i in range(2)]
    attn = [("norm.", "group_norm."), ("q.", "to_q."), ("k.", "to_k."), ("v.", "to_v."), ("proj_out.", "to_out.0.")]
    out = {}
    for key, value in state.items():
        new = key
        for original, ours in pairs:
            new = new.replace(ours, original)
        if "attn_1." in new:
            for original, ours in attn:
                new = new.replace("attn_1." + ours, "attn_1." + original)
            if value.dim() == 2:  # the original VAE attention uses 1x1 convolutions
                value = value.reshape(*value.shape, 1, 1)
        out["first_stage_model." + new] = value
    return out


def write_single_file(folder: str | Path, dest: str | Path) -> Path:
    """Write a diffusers SD 1.x folder as one CompVis-layout .safetensors checkpoint (what A1111 and the model sites
    use), so single-file loading can be tried on the tiny model; written to a temporary name, then renamed."""
    import os

    from safetensors.torch import load_file, save_file

    src, dest = Path(folder), Path(dest)

    def read(sub: str, name: str) -> dict[str, Any]:
        return load_file(str(src / sub / name))

    unet_config = json.loads((src / "unet" / "config.json").read_text())
    vae_config = json.loads((src / "vae" / "config.json").read_text())
    state = {**_unet_to_original(read("unet", "diffusion_pytorch_model.safetensors"), unet_config),
             **_vae_to_original(read("vae", "diffusion_pytorch_model.safetensors"), vae_config),
             **{"cond_stage_model.transformer." + ("" if k.startswith("text_model.") else "text_model.") + k: v
                for k, v in read("text_encoder", "model.safetensors").items()}}  # transformers 5 saves no prefix
    tmp = dest.with_name(f".{dest.name}.tmp")
    dest.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
    os.replace(tmp, dest)
    return dest
