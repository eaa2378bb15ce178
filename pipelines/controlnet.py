"""ControlNet models from ``<data>/controlnet`` and how checked units (pipelines/control_units.py) drive diffusers.

**Models** are diffusers folders, ``<data>/controlnet/<name>/`` with ``config.json`` and the weights, or single files
``<data>/controlnet/<name>.safetensors`` (also ``.pth``, ``.ckpt``, ``.bin``) as A1111 users have them: lllyasviel's
SD 1.x ControlNets in the original layout, or any in diffusers' layout (how SDXL ControlNets are published). Files
are configured offline from the ControlNet configs shipped in pipelines/configs (``controlnet-sd15``, full-size
``controlnet-sdxl``, the tiny ones), picked by their tensors' shapes. Models are listed as sd-webui-controlnet lists
them: ``name [hash]``, the hash being A1111's short legacy hash of the weights file (pipelines/hashes.py). A model is
for SD 1.x or SDXL, which its config tells; a unit whose model does not fit the checkpoint's family is refused.

How units are applied (control modes, the guidance window) is pipelines/control_apply.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from contracts import ControlNetUnit
from pipelines.checkpoints import FAMILY_LABELS
from pipelines.control_preprocessors import detect, fit_map, get_preprocessor, pixel_perfect_resolution
from pipelines.control_units import ControlUnitError
from pipelines.hashes import legacy_model_hash

WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
FILE_SUFFIXES = (".safetensors", ".pth", ".ckpt", ".bin")
SOFT_FACTOR = 0.825  # sd-webui-controlnet's soft-injection base
SOFT_LAYERS = 13  # SD 1.x's 12 down-block outputs and the middle block
ORIGINAL_PREFIX = "control_model."  # lllyasviel's files keep the ControlNet under this prefix (or none)


def _weights_file(folder: Path) -> Path | None:
    return next((folder / n for n in WEIGHT_FILES if (folder / n).is_file()), None)


def _is_controlnet_folder(entry: Path) -> bool:
    config = entry / "config.json"
    return (config.is_file() and _weights_file(entry) is not None
            and "ControlNet" in json.loads(config.read_text()).get("_class_name", ""))


def available_controlnets(folder: Path | None) -> dict[str, Path]:
    """ControlNet folders and files under ``folder`` by the name the extension lists, ``name [hash]``, sorted."""
    if folder is None or not Path(folder).is_dir():
        return {}
    found = {}
    for entry in sorted(Path(folder).iterdir(), key=lambda p: p.name.lower()):
        if entry.is_dir() and _is_controlnet_folder(entry):
            found[f"{entry.name} [{legacy_model_hash(_weights_file(entry))}]"] = entry  # type: ignore[arg-type]
        elif entry.is_file() and entry.suffix.lower() in FILE_SUFFIXES:
            found[f"{entry.stem} [{legacy_model_hash(entry)}]"] = entry
    return found


def _file_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape in a ControlNet file (the original prefix removed), read without loading the weights
    where the format allows."""
    if path.suffix.lower() == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 - not a dict
    else:
        import torch

        data = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        data = data.get("state_dict", data)
        shapes = {k: tuple(v.shape) for k, v in data.items() if hasattr(v, "shape")}
    return {k.removeprefix(ORIGINAL_PREFIX): v for k, v in shapes.items()}


def _file_signature(shapes: dict[str, tuple[int, ...]]) -> tuple[Any, ...] | None:
    """(SDXL?, first width, input channels, text width) of a ControlNet file in either layout; None if neither."""
    conv = shapes.get("conv_in.weight") or shapes.get("input_blocks.0.0.weight")
    cross = next((v for k, v in shapes.items() if k.endswith("attn2.to_k.weight")), None)
    if conv is None or cross is None:
        return None
    sdxl = "add_embedding.linear_1.weight" in shapes or "label_emb.0.0.weight" in shapes
    return sdxl, conv[0], conv[1], cross[1]


def _config_signature(config: dict[str, Any]) -> tuple[Any, ...]:
    return (config.get("addition_embed_type") == "text_time", config["block_out_channels"][0],
            config["in_channels"], config["cross_attention_dim"])


def _shipped_controlnet_configs() -> list[Path]:
    from pipelines.checkpoints import CONFIGS_DIR

    return [p for p in sorted(CONFIGS_DIR.iterdir())
            if (p / "config.json").is_file() and "ControlNet" in json.loads((p / "config.json").read_text())
            .get("_class_name", "")]


def controlnet_config_for(path: Path) -> Path:
    """The shipped ControlNet config folder a single file fits, or ControlUnitError saying what it is not."""
    try:
        shapes = _file_shapes(Path(path))
    except Exception as err:
        raise ControlUnitError({"controlnet.model": f"the ControlNet file {Path(path).name!r} could not be read "
                                                    f"({type(err).__name__}: {err})"}) from err
    signature = _file_signature(shapes)
    if signature is not None and signature[0] and "time_embed.0.weight" in shapes:
        signature = None  # SDXL in the original layout: diffusers does not convert its added embedding
    for folder in _shipped_controlnet_configs():
        if signature is not None and _config_signature(json.loads((folder / "config.json").read_text())) == signature:
            return folder
    names = ", ".join(p.name for p in _shipped_controlnet_configs())
    raise ControlUnitError({"controlnet.model": (
        f"the ControlNet file {Path(path).name!r} is not one Atelier can configure offline (it ships configs for "
        f"{names}: SD 1.x in either layout, full-size SDXL in diffusers' layout); put its diffusers folder "
        "(config.json and weights) in the controlnet directory instead")})


def _config_of(path: Path) -> dict[str, Any]:
    folder = Path(path) if Path(path).is_dir() else controlnet_config_for(Path(path))
    return json.loads((folder / "config.json").read_text())


def controlnet_family(path: Path) -> str:
    """"sdxl" or "sd15" (SD 2.x ControlNets say "sd2"), from the ControlNet's config."""
    config = _config_of(path)
    if config.get("addition_embed_type") == "text_time":
        return "sdxl"
    return "sd2" if config.get("cross_attention_dim") == 1024 else "sd15"


def check_families(units: list[ControlNetUnit], models: dict[str, Path], family: str) -> None:
    """Refuse units whose ControlNet is for another family than the checkpoint's ("sd15" or "sdxl")."""
    errors = {}
    for i, unit in enumerate(units):
        path = models.get(unit.model)
        own, theirs = family.removesuffix("-inpaint"), controlnet_family(path) if unit.enabled and path else ""
        if theirs and theirs != own:
            errors[f"controlnet.{i}.model"] = (f"ControlNet unit {i}: {unit.model!r} is a ControlNet for "
                                               f"{FAMILY_LABELS[theirs]}; the checkpoint is {FAMILY_LABELS[own]}: "
                                               f"choose a ControlNet made for {FAMILY_LABELS[own]}")
    if errors:
        raise ControlUnitError(errors)


def load_controlnet(path: Path, dtype: Any) -> Any:
    """A ControlNetModel from a diffusers folder or a single file (configured from a shipped config), offline."""
    from diffusers import ControlNetModel

    path = Path(path)
    if path.is_dir():
        return ControlNetModel.from_pretrained(str(path), torch_dtype=dtype, local_files_only=True)
    config = controlnet_config_for(path)
    return ControlNetModel.from_single_file(str(path), config=str(config), torch_dtype=dtype, local_files_only=True)


def control_image(unit: ControlNetUnit, width: int, height: int, annotators: Path | None = None,
                  fallback: Image.Image | None = None) -> Image.Image:
    """The unit's control map at the generation size: its picture (or ``fallback``, the img2img picture, as the
    extension uses when a unit has none) through the preprocessor at the processor resolution (pixel perfect:
    the size the picture will have), then fitted by the resize mode."""
    picture = unit.image if unit.image is not None else fallback
    if picture is None:
        raise ControlUnitError({"controlnet.image": f"the ControlNet unit with module {unit.module!r} has no image"})
    array = np.asarray(picture.convert("RGBA"))
    resolution = unit.processor_res
    if unit.pixel_perfect:
        resolution = pixel_perfect_resolution(array, height, width, unit.resize_mode)
    detected = detected_map(unit, array, resolution, annotators)
    return Image.fromarray(fit_map(detected, unit.resize_mode, height, width))


def detected_map(unit: ControlNetUnit, picture: Image.Image | np.ndarray, resolution: int,
                 annotators: Path | None = None) -> np.ndarray:
    """The unit's preprocessor run on a picture at a processor resolution: the map (H×W×3 uint8) before fitting,
    as sd-webui-controlnet's /controlnet/detect returns it."""
    preprocessor = get_preprocessor(unit.module)
    if preprocessor is not None and not preprocessor.resolution.visible:
        resolution = 512  # unused by the module (invert); any positive number
    return detect(unit.module, picture, int(resolution), unit.threshold_a, unit.threshold_b, annotators)
