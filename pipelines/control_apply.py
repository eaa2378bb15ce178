"""Applying ControlNet units to a running pipeline, as sd-webui-controlnet does: a hook on the UNet's forward.

Before each UNet call the hook runs the ControlNet of every unit active at this step on the same noisy latents,
timestep and text (and, for SDXL, the same pooled text and size conditioning), and hands the sum of their outputs to
the UNet as its down- and mid-block residuals, which is what diffusers' ControlNet pipelines do inside their loop
(``tests/pipelines/test_controlnet.py`` shows the pixels are theirs). A hook rather than those pipelines because one
mechanism then serves every task and family the backend runs (txt2img, img2img, inpaint with 4- or 9-channel UNets,
hires fix's second pass; SD 1.x and SDXL), over the latents and masked-picture latents the backend prepares itself,
and because the backend's CPU row-by-row split (pipelines/diffusers_running.py) then splits the ControlNet's work
too, so a batch gives each job the pixels it gets alone. A 9-channel inpainting UNet's extra channels (mask, masked
picture) are not the ControlNet's: it sees the first four, the latents, as in diffusers.

**Control modes** (scripts/hook.py): *Balanced* adds the outputs times the weight; *My prompt is more important*
("soft injection") scales output ``i`` of the 13 (SD 1.x; SDXL keeps the first 10 of the same 13 factors) by
``weight · 0.825^(12−i)``, fading out towards the shallow layers; *ControlNet is more important* does the same and
also leaves the unconditional (negative prompt) half of a CFG batch without control. In a hires fix's second pass
the extension applies canny and mlsd units softly whatever their mode, and so does this module.

**Guidance window**: a unit applies at step ``i`` of a pass's ``N`` when ``start ≤ i/N ≤ end`` (the extension's rule;
a weight of 0 applies nothing, so it gives exactly the picture without ControlNet).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from contracts import ControlNetUnit
from pipelines.controlnet import available_controlnets, check_families, load_controlnet

SOFT_FACTOR = 0.825  # sd-webui-controlnet's soft-injection base
SOFT_LAYERS = 13  # SD 1.x's 12 down-block outputs and the middle block
PROMPT_FIRST = "My prompt is more important"
# Modules the extension applies softly in a hires fix's second pass (its "hr_option" default, Both).
SOFT_IN_HIRES = ("canny", "mlsd")
KEEP_LOADED = 2  # ControlNets kept loaded beyond those the running job uses (A1111's model cache default)


def layer_scales(mode: str, layers: int) -> list[float]:
    """The per-output factors of a control mode (before the weight): 1 for Balanced, else the soft injection's."""
    if mode == "Balanced":
        return [1.0] * layers
    return [SOFT_FACTOR ** float(SOFT_LAYERS - 1 - i) for i in range(SOFT_LAYERS)][:layers]


def map_tensor(image: Image.Image) -> Any:
    """A control map as the ControlNet reads it: 1×3×H×W, values 0..1 (diffusers' control image processor)."""
    import torch

    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1)[None].contiguous()


@dataclass(frozen=True)
class AppliedUnit:
    """One unit as a pass applies it: its ControlNet, its map (map_tensor), weight, window and control mode."""

    net: Any
    cond: Any
    weight: float
    start: float
    end: float
    mode: str

    def active(self, step: int, total: int) -> bool:
        """Whether the unit applies at step `step` (0-based) of `total`."""
        return self.weight > 0 and self.start <= step / max(1, total) <= self.end


def applied_units(units: list[ControlNetUnit], nets: list[Any], maps: list[Image.Image],
                  hires: bool = False) -> list[AppliedUnit]:
    """The enabled units with their ControlNets and maps (in that order); `hires`: a hires fix's second pass."""
    active = [u for u in units if u.enabled]
    if not len(active) == len(nets) == len(maps):
        raise ValueError(f"{len(active)} enabled units, {len(nets)} ControlNets and {len(maps)} control maps")
    out = []
    for unit, net, picture in zip(active, nets, maps, strict=True):
        mode = PROMPT_FIRST if hires and unit.module in SOFT_IN_HIRES else unit.control_mode
        out.append(AppliedUnit(net, map_tensor(picture), float(unit.weight), unit.guidance_start,
                               unit.guidance_end, mode))
    return out


@dataclass
class ControlState:
    """What the hook reads at each UNet call: the units of the pass running now, whether it runs classifier-free
    guidance, the pass's step (set by the step callback) and the pipeline running it (its step count)."""

    units: list[AppliedUnit] = field(default_factory=list)
    cfg: bool = False
    step: int = 0
    pipe: Any = None

    def start_pass(self, units: list[AppliedUnit], pipe: Any) -> None:
        """A new pipeline call: its units and pipeline, from step 0."""
        self.units, self.pipe, self.step = units, pipe, 0

    def total(self) -> int:
        """Steps of the running pass (the pipeline sets num_timesteps before its loop)."""
        return int(getattr(self.pipe, "num_timesteps", 0) or 1)


def _shape(down: list[Any], mid: Any, mode: str, batch: int, cfg: bool) -> tuple[list[Any], Any]:
    """One unit's outputs after its control mode (the weight is already in them)."""
    import torch

    if mode == "Balanced":
        return down, mid
    factors = layer_scales(mode, len(down) + 1)
    down, mid = [d * f for d, f in zip(down, factors, strict=False)], mid * factors[-1]
    if mode == "ControlNet is more important" and cfg:
        # The batch is [negative; positive]: the negative half gets no control (sd-webui's cond_mark).
        mark = torch.cat([torch.zeros(batch // 2), torch.ones(batch - batch // 2)]).to(mid).reshape(-1, 1, 1, 1)
        down, mid = [d * mark for d in down], mid * mark
    return down, mid


def residuals(state: ControlState, sample: Any, timestep: Any, hidden: Any, added: Any) -> tuple[list[Any], Any] | None:
    """The summed ControlNet outputs for one UNet call, or None when no unit applies at this step."""
    down_total: list[Any] | None = None
    mid_total: Any = None
    total = state.total()
    latents = sample[:, :4]  # a 9-channel inpainting UNet's mask and masked picture are not the ControlNet's
    for unit in state.units:
        if not unit.active(state.step, total):
            continue
        cond = unit.cond.to(latents.device, unit.net.dtype).expand(latents.shape[0], -1, -1, -1)
        down, mid = unit.net(latents.to(unit.net.dtype), timestep, encoder_hidden_states=hidden.to(unit.net.dtype),
                             controlnet_cond=cond, conditioning_scale=unit.weight, added_cond_kwargs=added,
                             return_dict=False)
        down, mid = _shape(list(down), mid, unit.mode, latents.shape[0], state.cfg)
        down_total = down if down_total is None else [a + b for a, b in zip(down_total, down, strict=True)]
        mid_total = mid if mid_total is None else mid_total + mid
    return None if down_total is None else (down_total, mid_total)


@contextlib.contextmanager
def controlled_unet(unet: Any, state: ControlState) -> Iterator[None]:
    """Within the block, every call of `unet` gets the residuals of the units `state` holds at that moment; the
    forward in place before (the class's, or another wrapper) is restored afterwards."""
    had_own, previous = "forward" in vars(unet), unet.forward

    def forward(sample: Any, timestep: Any, *args: Any, **kwargs: Any) -> Any:
        hidden = kwargs.get("encoder_hidden_states", args[0] if args else None)
        found = residuals(state, sample, timestep, hidden, kwargs.get("added_cond_kwargs"))
        if found is not None:
            kwargs["down_block_additional_residuals"], kwargs["mid_block_additional_residual"] = found
        return previous(sample, timestep, *args, **kwargs)

    unet.forward = forward
    try:
        yield
    finally:
        if had_own:
            unet.forward = previous
        else:
            del unet.forward


class ControlNetCache:
    """The ControlNets of ``<data>/controlnet`` loaded on the backend's device and dtype: those the running job uses
    and up to KEEP_LOADED more, least recently used first out; a file changed on disk is loaded again."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = Path(folder) if folder is not None else None
        self._loaded: dict[Path, tuple[Any, tuple[int, int]]] = {}  # path -> (model, file version)
        self._lock = threading.Lock()

    def models(self) -> dict[str, Path]:
        """Available ControlNets by their listed name, "name [hash]"."""
        return available_controlnets(self.folder)

    def nets_for(self, units: list[ControlNetUnit], family: str, dtype: Any, place: Any) -> list[Any]:
        """The loaded ControlNet of each enabled unit (ControlUnitError for an unknown one or one of another family
        than the checkpoint's); `place` puts a newly loaded model where the memory mode wants it."""
        from pipelines.control_units import ControlUnitError

        models = self.models()
        missing = {f"controlnet.{i}.model": f"ControlNet unit {i}: the ControlNet {u.model!r} is not in the controlnet "
                                            f"folder (any more); available: {', '.join(models) or 'none'}"
                   for i, u in enumerate(units) if u.enabled and u.model not in models}
        if missing:
            raise ControlUnitError(missing)
        check_families(units, models, family)
        active = [u for u in units if u.enabled]
        with self._lock:
            nets = [self._load(models[u.model], dtype, place) for u in active]
            self._trim({models[u.model] for u in active})
        return nets

    def _load(self, path: Path, dtype: Any, place: Any) -> Any:
        version = _version(path)
        cached = self._loaded.pop(path, None)
        if cached is None or cached[1] != version:
            cached = (place(load_controlnet(path, dtype)), version)
        self._loaded[path] = cached  # the most recently used go last
        return cached[0]

    def _trim(self, in_use: set[Path]) -> None:
        spare = [p for p in self._loaded if p not in in_use]
        for path in spare[:max(0, len(spare) - KEEP_LOADED)]:
            del self._loaded[path]

    def forget(self) -> None:
        """Drop every loaded ControlNet (the backend unloads, or moves to another device)."""
        with self._lock:
            self._loaded.clear()


def _version(path: Path) -> tuple[int, int]:
    """A ControlNet's file version (size and mtime of its weights), to notice a file replaced on disk."""
    from pipelines.controlnet import WEIGHT_FILES

    target = next((path / n for n in WEIGHT_FILES if (path / n).is_file()), path) if path.is_dir() else path
    stat = target.stat()
    return stat.st_size, stat.st_mtime_ns
