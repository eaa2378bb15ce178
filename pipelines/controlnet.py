"""ControlNet models from ``<data>/controlnet`` and how checked units (pipelines/control_units.py) drive diffusers.

**Models** are diffusers folders, ``<data>/controlnet/<name>/`` with ``config.json`` and the weights, listed as
sd-webui-controlnet lists its models: ``name [hash]``, the hash being A1111's short legacy hash of the weights file
(pipelines/hashes.py). A model is for SD 1.x or SDXL, which its config tells; a unit whose model does not fit the
checkpoint's family is refused.

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

from pipelines.control_preprocessors import detect, fit_map, get_preprocessor, pixel_perfect_resolution
from pipelines.control_units import ControlUnit, ControlUnitError
from pipelines.hashes import legacy_model_hash

WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
SOFT_FACTOR = 0.825  # sd-webui-controlnet's soft-injection base
SOFT_LAYERS = 13  # SD 1.x's 12 down-block outputs and the middle block


def _weights_file(folder: Path) -> Path | None:
    return next((folder / n for n in WEIGHT_FILES if (folder / n).is_file()), None)


def available_controlnets(folder: Path | None) -> dict[str, Path]:
    """ControlNet folders under ``folder`` by the name the extension would list, ``name [hash]``, sorted."""
    if folder is None or not Path(folder).is_dir():
        return {}
    found = {}
    for entry in sorted(Path(folder).iterdir(), key=lambda p: p.name.lower()):
        config, weights = entry / "config.json", _weights_file(entry)
        if config.is_file() and weights is not None and "ControlNet" in json.loads(config.read_text()).get(
                "_class_name", ""):
            found[f"{entry.name} [{legacy_model_hash(weights)}]"] = entry
    return found


def controlnet_family(folder: Path) -> str:
    """"sdxl" or "sd15" (SD 2.x ControlNets say "sd2"), from the ControlNet's config."""
    config = json.loads((Path(folder) / "config.json").read_text())
    if config.get("addition_embed_type") == "text_time":
        return "sdxl"
    return "sd2" if config.get("cross_attention_dim") == 1024 else "sd15"


def check_families(units: list[ControlUnit], models: dict[str, Path], family: str) -> None:
    """Refuse units whose ControlNet is for another family than the checkpoint's ("sd15" or "sdxl")."""
    errors = {}
    for i, unit in enumerate(units):
        folder = models.get(unit.model)
        if unit.enabled and folder is not None and controlnet_family(folder) != family.removesuffix("-inpaint"):
            errors[f"controlnet.{i}.model"] = (f"ControlNet unit {i}: {unit.model!r} is a ControlNet for "
                                               f"{controlnet_family(folder).upper()}, the checkpoint is "
                                               f"{family.removesuffix('-inpaint').upper()}")
    if errors:
        raise ControlUnitError(errors)


def load_controlnet(folder: Path, dtype: Any) -> Any:
    """A ControlNetModel from a diffusers folder, offline."""
    from diffusers import ControlNetModel

    return ControlNetModel.from_pretrained(str(folder), torch_dtype=dtype, local_files_only=True)


def control_image(unit: ControlUnit, width: int, height: int, annotators: Path | None = None,
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


def plan_control(units: list[ControlUnit], nets: list[Any], images: list[Image.Image], steps: int,
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
