"""ControlNet models from ``<data>/controlnet`` and how checked units (pipelines/control_units.py) drive diffusers.

**Models** are diffusers folders, ``<data>/controlnet/<name>/`` with ``config.json`` and the weights, or single files
``<data>/controlnet/<name>.safetensors`` (also ``.pth``, ``.ckpt``, ``.bin``) as A1111 users have them: lllyasviel's
SD 1.x ControlNets in the original layout, or any in diffusers' layout (how SDXL ControlNets are published). Files
are configured offline from the ControlNet configs shipped in pipelines/configs (``controlnet-sd15``, full-size
``controlnet-sdxl``, the tiny ones), picked by their tensors' shapes. Models are listed as sd-webui-controlnet lists
them: ``name [hash]``, the hash being A1111's short legacy hash of the weights file (pipelines/hashes.py). A model is
for SD 1.x or SDXL, which its config tells; a unit whose model does not fit the checkpoint's family is refused.

**Control modes**, as sd-webui-controlnet applies them (scripts/hook.py): *Balanced* adds the ControlNet's outputs
times the weight; *My prompt is more important* ("soft injection") scales output ``i`` of the 13 (SD 1.x; SDXL keeps
the first 10 of the same 13 factors) by ``weight · 0.825^(12−i)``, fading out towards the shallow layers; *ControlNet
is more important* does the same and also leaves the unconditional (negative prompt) half of a CFG batch without
control. diffusers' ``guess_mode`` is close to the last (``logspace(-1, 0)`` factors, the ControlNet run on the
conditional half only) but not the same, and covers all units at once; so :class:`UnitControlNets`, a
``MultiControlNetModel``, applies each unit's own mode and the pipeline runs with ``guess_mode=False``.

**Guidance window**: the extension applies a unit at step ``i`` of ``N`` when ``start ≤ i/N ≤ end``; diffusers keeps it
when ``i/N ≥ start`` and ``(i+1)/N ≤ end``. :func:`guidance_window` turns the first into the second.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from contracts import ControlNetUnit
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
        if unit.enabled and path is not None and controlnet_family(path) != family.removesuffix("-inpaint"):
            errors[f"controlnet.{i}.model"] = (f"ControlNet unit {i}: {unit.model!r} is a ControlNet for "
                                               f"{controlnet_family(path).upper()}, the checkpoint is "
                                               f"{family.removesuffix('-inpaint').upper()}")
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
    preprocessor = get_preprocessor(unit.module)
    if preprocessor is not None and not preprocessor.resolution.visible:
        resolution = 512  # unused by the module (invert); any positive number
    detected = detect(unit.module, array, int(resolution), unit.threshold_a, unit.threshold_b, annotators)
    return Image.fromarray(fit_map(detected, unit.resize_mode, height, width))


def guidance_window(start: float, end: float, steps: int) -> tuple[float, float] | None:
    """(control_guidance_start, control_guidance_end) for diffusers that apply a unit at exactly the steps ``i``
    the extension does: ``start ≤ i/steps ≤ end``; None when that is no step (diffusers refuses such a window)."""
    active = [i for i in range(steps) if start <= i / steps <= end]
    if not active:
        return None
    return start, (active[-1] + 1) / steps


def layer_scales(mode: str, layers: int) -> list[float]:
    """The per-output factors of a control mode (before the weight): 1 for Balanced, else the soft injection's."""
    if mode == "Balanced":
        return [1.0] * layers
    return [SOFT_FACTOR ** float(SOFT_LAYERS - 1 - i) for i in range(SOFT_LAYERS)][:layers]


def _unit_control_nets() -> type:
    """The MultiControlNetModel subclass (built lazily: importing diffusers takes seconds)."""
    from diffusers.models.controlnets.multicontrolnet import MultiControlNetModel

    class UnitControlNets(MultiControlNetModel):
        """ControlNets run unit by unit with each unit's control mode (see the module's docstring)."""

        def __init__(self, controlnets: list[Any], modes: list[str], cfg: bool) -> None:
            super().__init__(controlnets)
            self.modes, self.cfg = list(modes), cfg

        def forward(self, sample: Any, timestep: Any, encoder_hidden_states: Any, controlnet_cond: list[Any],
                    conditioning_scale: list[float], guess_mode: bool = False, return_dict: bool = True,
                    **kwargs: Any) -> Any:
            down_total: list[Any] | None = None
            mid_total: Any = None
            for image, scale, net, mode in zip(controlnet_cond, conditioning_scale, self.nets, self.modes,
                                               strict=True):
                down, mid = net(sample=sample, timestep=timestep, encoder_hidden_states=encoder_hidden_states,
                                controlnet_cond=image, conditioning_scale=scale, guess_mode=False,
                                return_dict=False, **kwargs)
                down, mid = self._shape(list(down), mid, mode, sample.shape[0])
                down_total = down if down_total is None else [a + b for a, b in zip(down_total, down, strict=True)]
                mid_total = mid if mid_total is None else mid_total + mid
            return down_total, mid_total

        def _shape(self, down: list[Any], mid: Any, mode: str, batch: int) -> tuple[list[Any], Any]:
            import torch

            factors = layer_scales(mode, len(down) + 1)
            if mode != "Balanced":
                down, mid = [d * f for d, f in zip(down, factors, strict=False)], mid * factors[-1]
            if mode == "ControlNet is more important" and self.cfg:
                # The batch is [negative; positive]: the negative half gets no control (sd-webui's cond_mark).
                mark = torch.cat([torch.zeros(batch // 2), torch.ones(batch - batch // 2)]).to(mid)
                mark = mark.reshape(-1, 1, 1, 1)
                down, mid = [d * mark for d in down], mid * mark
            return down, mid

    return UnitControlNets


@dataclass
class ControlPlan:
    """What a pipeline call with ControlNet needs: the ``controlnet`` module to set on the pipeline and the
    keyword arguments of the call."""

    controlnet: Any
    call_kwargs: dict[str, Any]


def plan_control(units: list[ControlNetUnit], nets: list[Any], images: list[Image.Image], steps: int,
                 cfg: bool) -> ControlPlan:
    """The ControlNet module and call arguments for the enabled units (``nets`` and ``images`` in their order);
    ``steps`` is the number of steps the pipeline call runs, ``cfg`` whether it runs classifier-free guidance."""
    active = [u for u in units if u.enabled]
    if not (len(active) == len(nets) == len(images)) or not active:
        raise ValueError(f"{len(active)} enabled units, {len(nets)} ControlNets and {len(images)} control images")
    windows = [guidance_window(u.guidance_start, u.guidance_end, steps) for u in active]
    # A unit that applies at no step runs with weight 0 (its outputs add exactly nothing) over the whole window.
    weights = [float(u.weight) if w is not None else 0.0 for u, w in zip(active, windows, strict=True)]
    spans = [w or (0.0, 1.0) for w in windows]
    module = _unit_control_nets()(nets, [u.control_mode for u in active], cfg)
    return ControlPlan(module, {"image": images, "controlnet_conditioning_scale": weights,
                                "control_guidance_start": [w[0] for w in spans],
                                "control_guidance_end": [w[1] for w in spans], "guess_mode": False})


def control_pipeline(pipe: Any, controlnet: Any) -> Any:
    """The ControlNet variant of a loaded pipeline (txt2img, img2img or inpaint; SD 1.x or SDXL) sharing its
    modules: diffusers' AutoPipeline ``from_pipe`` with the ControlNet added."""
    from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting, AutoPipelineForText2Image

    name = type(pipe).__name__
    auto = (AutoPipelineForInpainting if "Inpaint" in name else
            AutoPipelineForImage2Image if "Img2Img" in name else AutoPipelineForText2Image)
    control = auto.from_pipe(pipe, controlnet=controlnet)
    control.set_progress_bar_config(disable=True)
    return control
