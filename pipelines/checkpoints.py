"""Checkpoints from ``<data>/models``: single ``.safetensors`` / ``.ckpt`` files (the format of the model sites and
AUTOMATIC1111) and diffusers folders; VAEs from ``<data>/vae``; A1111's ``Model hash``.

A single-file checkpoint carries weights only. Its pipeline is configured offline from the diffusers configs
shipped under ``pipelines/configs/``: Stable Diffusion 1.x (``sd15``), its 9-channel inpainting variant
(``sd15-inpainting``), SDXL base (``sdxl``) and SDXL inpainting (``sdxl-inpainting``), and Atelier's tiny models
(``tiny-sd``, ``tiny-sdxl``, ``tiny-sdxl-inpainting``), picked by the family the checkpoint's keys show and the
shapes of its tensors. Nothing is downloaded: other families (SD 2.x, the SDXL refiner) get a message naming the
family and asking for a diffusers folder instead.
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
# Keys of the original (CompVis / Stability "sgm") layout that tell the families apart: the UNet's first convolution
# (out channels, in channels: 9 for inpainting) and each text encoder's token embedding (vocabulary, width).
CONV_IN = "model.diffusion_model.input_blocks.0.0.weight"
TEXT_EMBED = "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"  # SD 1.x: CLIP ViT-L
SD2_TEXT_EMBED = "cond_stage_model.model.token_embedding.weight"  # SD 2.x: OpenCLIP ViT-H
XL_TEXT_EMBED = "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight"  # SDXL: CLIP-L
XL_TEXT_EMBED_2 = "conditioner.embedders.1.model.token_embedding.weight"  # SDXL base: OpenCLIP ViT-bigG
REFINER_TEXT_EMBED = "conditioner.embedders.0.model.token_embedding.weight"  # SDXL refiner: bigG alone
_FAMILY_KEYS = (CONV_IN, TEXT_EMBED, SD2_TEXT_EMBED, XL_TEXT_EMBED, XL_TEXT_EMBED_2, REFINER_TEXT_EMBED)
FAMILY_LABELS = {"sd15": "Stable Diffusion 1.x", "sd15-inpaint": "Stable Diffusion 1.x inpainting",
                 "sd2": "Stable Diffusion 2.x", "sd2-inpaint": "Stable Diffusion 2.x inpainting", "sdxl": "SDXL",
                 "sdxl-inpaint": "SDXL inpainting", "sdxl-refiner": "SDXL refiner", "unknown": "an unknown model"}


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
    wanted = _FAMILY_KEYS
    if path.suffix.lower() == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
            return {k: tuple(f.get_slice(k).get_shape()) for k in wanted if k in keys}
    import torch

    data = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    data = data.get("state_dict", data)
    return {k: tuple(data[k].shape) for k in wanted if k in data}


def family_of(shapes: dict[str, tuple[int, ...]]) -> str:
    """The model family a checkpoint's key shapes show: sd15, sd2, sdxl (each maybe "-inpaint"), sdxl-refiner or
    unknown; the same keys diffusers' own detection reads (loaders/single_file_utils.py)."""
    conv = shapes.get(CONV_IN)
    inpaint = "-inpaint" if conv is not None and len(conv) > 1 and conv[1] == 9 else ""
    if XL_TEXT_EMBED_2 in shapes:
        return "sdxl" + inpaint
    if REFINER_TEXT_EMBED in shapes:
        return "sdxl-refiner"
    if SD2_TEXT_EMBED in shapes:
        return "sd2" + inpaint
    if TEXT_EMBED in shapes:
        return "sd15" + inpaint
    return "unknown"


def checkpoint_family(path: str | Path) -> str:
    """The family of a single-file checkpoint (see family_of), read from its tensor shapes without loading them."""
    return family_of(_read_shapes(Path(path).expanduser()))


def model_family(path: str | Path) -> str | None:
    """"sd15", "sd2" or "sdxl" (no "-inpaint") for a diffusers folder (its UNet config) or a .safetensors checkpoint
    (its tensor shapes), without loading weights; None when it cannot be told cheaply (a .ckpt is unpickled whole,
    so it is left to the check when the model runs)."""
    p = Path(path).expanduser()
    config = p / "unet" / "config.json"
    if config.is_file():
        unet = json.loads(config.read_text())
        if unet.get("addition_embed_type") == "text_time":
            return "sdxl"
        return "sd2" if unet.get("cross_attention_dim") == 1024 else "sd15"
    if p.suffix.lower() != ".safetensors" or not p.is_file():
        return None
    try:
        family = checkpoint_family(p).removesuffix("-inpaint")
    except ModelUnavailable:  # unreadable: loading it says so, with the job that asks for it
        return None
    return family if family in ("sd15", "sd2", "sdxl") else None


def _read_shapes(p: Path) -> dict[str, tuple[int, ...]]:
    try:
        return _shapes(p)
    except Exception as err:
        raise ModelUnavailable(f"The checkpoint {p.name!r} could not be read ({type(err).__name__}: {err}); "
                               "it may be incomplete or not a Stable Diffusion checkpoint.") from err


def _signature(shapes: dict[str, tuple[int, ...]]) -> tuple[Any, ...] | None:
    """(family, UNet conv_in (out, in), text encoder widths) of a checkpoint, or None when a key is missing."""
    family = family_of(shapes)
    texts = {"sd15": (TEXT_EMBED,), "sdxl": (XL_TEXT_EMBED, XL_TEXT_EMBED_2)}.get(family.removesuffix("-inpaint"))
    conv = shapes.get(CONV_IN)
    if texts is None or conv is None or any(k not in shapes for k in texts):
        return None
    return family, tuple(conv[:2]), tuple(shapes[k][1] for k in texts)


def config_family(folder: Path) -> str:
    """The family a shipped config folder configures (sd15, sdxl, each maybe "-inpaint")."""
    index = json.loads((folder / "model_index.json").read_text())
    unet = json.loads((folder / "unet" / "config.json").read_text())
    family = "sdxl" if "XL" in index["_class_name"] else "sd15"
    return family + ("-inpaint" if unet["in_channels"] == 9 else "")


def _config_signature(folder: Path) -> tuple[Any, ...]:
    unet = json.loads((folder / "unet" / "config.json").read_text())
    widths = tuple(json.loads((folder / sub / "config.json").read_text())["hidden_size"]
                   for sub in ("text_encoder", "text_encoder_2") if (folder / sub / "config.json").is_file())
    return config_family(folder), (unet["block_out_channels"][0], unet["in_channels"]), widths


def shipped_configs() -> list[str]:
    """Names of the configs under pipelines/configs that single-file checkpoints can use."""
    return sorted(p.name for p in CONFIGS_DIR.iterdir() if (p / "model_index.json").is_file())


def config_for(path: str | Path) -> Path:
    """The shipped config folder whose family, UNet and text encoders match the checkpoint's tensors."""
    p = Path(path).expanduser()
    shapes = _read_shapes(p)
    signature = _signature(shapes)
    for name in shipped_configs():
        if signature is not None and _config_signature(CONFIGS_DIR / name) == signature:
            return CONFIGS_DIR / name
    family = family_of(shapes)
    what = FAMILY_LABELS[family] + " checkpoint" if family != "unknown" else "not a checkpoint of a known family"
    raise ModelUnavailable(
        f"The checkpoint {p.name!r} ({what}) is not one Atelier can configure offline: it ships configs for "
        f"{', '.join(shipped_configs())} (SD 2.x and the SDXL refiner are not among them). "
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


def clip_tokenizer(pad: str = "<|endoftext|>") -> Any:
    """The CLIP ViT-L/14 tokenizer Stable Diffusion 1.x uses, built offline; with ``pad="!"``, SDXL's second
    tokenizer (the same BPE padded like OpenCLIP's, with id 0)."""
    from transformers import CLIPTokenizer

    vocab, merges = _clip_vocab_and_merges()
    return CLIPTokenizer(vocab=dict(vocab), merges=list(merges), model_max_length=77, pad_token=pad)


def load_checkpoint(path: str | Path, dtype: Any) -> Any:
    """A diffusers pipeline from a single-file checkpoint, configured from the shipped config; no network."""
    import diffusers

    p = Path(path).expanduser()
    config = config_for(p)
    cls = getattr(diffusers, json.loads((config / "model_index.json").read_text())["_class_name"])
    extra: dict[str, Any] = {}
    for sub, pad in (("tokenizer", "<|endoftext|>"), ("tokenizer_2", "!")):
        if (config / sub).is_dir() and not (config / sub / "vocab.json").is_file():
            extra[sub] = clip_tokenizer(pad)
    if config_family(config).startswith("sdxl"):
        # No invisible watermark, like AUTOMATIC1111 (diffusers adds one whenever the package is installed).
        extra["add_watermarker"] = False
    else:  # no safety checker, like AUTOMATIC1111 (and like folders loaded by the backend)
        extra.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    return cls.from_single_file(str(p), config=str(config), local_files_only=True, torch_dtype=dtype, **extra)


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
    # SDXL's added embedding of the pooled text and the size conditioning ("text_time").
    pairs += [("label_emb.0.0.", "add_embedding.linear_1."), ("label_emb.0.2.", "add_embedding.linear_2.")]
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


_OPEN_CLIP = [("text_model.encoder.layers.", "transformer.resblocks."), (".layer_norm1.", ".ln_1."),
              (".layer_norm2.", ".ln_2."), (".mlp.fc1.", ".mlp.c_fc."), (".mlp.fc2.", ".mlp.c_proj."),
              (".self_attn.out_proj.", ".attn.out_proj."), ("text_model.final_layer_norm.", "ln_final."),
              ("text_model.embeddings.token_embedding.", "token_embedding.")]


def _open_clip_to_original(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    """A CLIPTextModelWithProjection's weights in OpenCLIP's layout (SDXL's ViT-bigG): fused q/k/v ``in_proj``,
    a bare ``positional_embedding``, and ``text_projection`` applied as ``x @ P`` (the transposed Linear weight)."""
    import torch

    out: dict[str, Any] = {}
    for key, value in state.items():
        if key.endswith("position_ids"):
            continue
        if key == "text_model.embeddings.position_embedding.weight":
            out[prefix + "positional_embedding"] = value
        elif key == "text_projection.weight":
            out[prefix + "text_projection"] = value.T.contiguous()
        elif ".self_attn.q_proj." in key:
            kind = key.rsplit(".", 1)[1]  # weight or bias
            parts = [state[key.replace(".q_proj.", f".{n}_proj.")] for n in "qkv"]
            layer = key.split(".self_attn.")[0].replace("text_model.encoder.layers.", "transformer.resblocks.")
            out[f"{prefix}{layer}.attn.in_proj_{kind}"] = torch.cat(parts)
        elif ".self_attn.k_proj." not in key and ".self_attn.v_proj." not in key:
            new = key
            for ours, original in _OPEN_CLIP:
                new = new.replace(ours, original)
            out[prefix + new] = value
    return out


def write_single_file(folder: str | Path, dest: str | Path) -> Path:
    """Write a diffusers SD 1.x or SDXL folder as one .safetensors checkpoint in the original layout (CompVis for SD,
    Stability's "sgm" conditioner keys for SDXL: what A1111 and the model sites use), so single-file loading can be
    tried on the tiny models; written to a temporary name, then renamed."""
    import os

    from safetensors.torch import load_file, save_file

    src, dest = Path(folder), Path(dest)

    def read(sub: str, name: str) -> dict[str, Any]:
        return load_file(str(src / sub / name))

    unet_config = json.loads((src / "unet" / "config.json").read_text())
    vae_config = json.loads((src / "vae" / "config.json").read_text())
    state = {**_unet_to_original(read("unet", "diffusion_pytorch_model.safetensors"), unet_config),
             **_vae_to_original(read("vae", "diffusion_pytorch_model.safetensors"), vae_config)}
    sdxl = (src / "text_encoder_2").is_dir()
    # SDXL keeps CLIP-L as the conditioner's first embedder; transformers 5 saves CLIPTextModel with no prefix.
    clip_prefix = "conditioner.embedders.0.transformer." if sdxl else "cond_stage_model.transformer."
    state.update({clip_prefix + ("" if k.startswith("text_model.") else "text_model.") + k: v
                  for k, v in read("text_encoder", "model.safetensors").items()})
    if sdxl:
        state.update(_open_clip_to_original(read("text_encoder_2", "model.safetensors"),
                                            "conditioner.embedders.1.model."))
    tmp = dest.with_name(f".{dest.name}.tmp")
    dest.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
    os.replace(tmp, dest)
    return dest
