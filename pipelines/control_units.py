"""ControlNet units as sd-webui-controlnet defines them: fields, checks, its API's names, and its infotext.

A unit is one control: a picture, the preprocessor (``module``) that makes it a control map, the ControlNet
(``model``) that reads the map, how strongly (``weight``) and when (``guidance_start``..``guidance_end``, fractions
of the steps), the control mode, how the map is fitted to the image (``resize_mode``), and the preprocessor's
resolution and thresholds. Names, defaults and ranges are the extension's (internal_controlnet/args.py,
scripts/enums.py): weight 0..2, guidance 0..1 with start ≤ end, ``-1`` for "the module's default" resolution and
thresholds. One difference: where the extension quietly replaces an out-of-range resolution or threshold by the
default, a unit here is refused with a message naming the field and its range (bad input changes nothing).

The infotext entry is the extension's: ``ControlNet 0: "Module: canny, Model: name [hash], Weight: 1.0, Resize Mode:
Crop and Resize, Processor Res: 512, Threshold A: 100.0, Threshold B: 200.0, Guidance Start: 0.0, Guidance End:
1.0, Pixel Perfect: False, Control Mode: Balanced"`` (the quotes are the infotext writer's, storage/files.py).
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any

import numpy as np
from PIL import Image

from contracts import CONTROL_MODES, CONTROL_RESIZE_MODES, MAX_CONTROL_WEIGHT, ControlNetUnit, control_infotext
from pipelines.control_preprocessors import Slider, get_preprocessor, module_list

# Old names of the resize modes that the extension still accepts (external_code.resize_mode_aliases).
RESIZE_ALIASES = {"Inner Fit (Scale to Fit)": "Crop and Resize", "Outer Fit (Shrink to Fit)": "Resize and Fill",
                  "Scale to Fit (Inner Fit)": "Crop and Resize", "Envelope (Outer Fit)": "Resize and Fill"}
# The extension's API names that mean another field (ControlNetUnit.legacy_field_alias).
API_ALIASES = {"input_image": "image", "guidance": "guidance_end", "lowvram": "low_vram"}


class ControlUnitError(ValueError):
    """Units that fail their checks: ``errors`` maps ``controlnet.<index>.<field>`` to a message naming both."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(errors.values()))


def _number(value: Any, name: str, kind: type = float) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if kind is int and number != int(number):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    return kind(number)


def _flag(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in (0, 1) or (isinstance(value, str) and value.lower() in ("true", "false")):
        return value is True or value == 1 or str(value).lower() == "true"
    raise ValueError(f"{name} must be true or false, got {value!r}")


def control_mode_of(value: Any) -> str:
    """A control mode given as its name (any case) or its number 0, 1, 2 (Balanced, prompt, ControlNet)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(CONTROL_MODES):
        return CONTROL_MODES[value]
    for mode in CONTROL_MODES:
        if isinstance(value, str) and value.strip().lower() == mode.lower():
            return mode
    raise ValueError(f"control_mode must be one of {', '.join(repr(m) for m in CONTROL_MODES)} or 0, 1, 2; "
                     f"got {value!r}")


def resize_mode_of(value: Any) -> str:
    """A resize mode given as its name, an old alias, or its number (0, 1, 2; 3, A1111's latent resize, is 0)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 3:
        return CONTROL_RESIZE_MODES[0 if value == 3 else value]
    if isinstance(value, str):
        name = RESIZE_ALIASES.get(value.strip(), value.strip())
        for mode in CONTROL_RESIZE_MODES:
            if name.lower() == mode.lower():
                return mode
    raise ValueError(f"resize_mode must be one of {', '.join(repr(m) for m in CONTROL_RESIZE_MODES)} or 0, 1, 2; "
                     f"got {value!r}")


def decode_image(value: Any) -> Image.Image:
    """A control picture from a PIL image, an H×W(×C) uint8 array, or base64 (a data: URL or bare), as the
    extension's API takes it."""
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, np.ndarray):
        return Image.fromarray(value.astype(np.uint8))
    if isinstance(value, str):
        data = value.split(",", 1)[1] if value.startswith("data:") else value
        try:
            image = Image.open(io.BytesIO(base64.b64decode(data, validate=True)))
            image.load()
            return image
        except (binascii.Error, OSError, ValueError) as err:
            raise ValueError(f"image is not a readable picture ({type(err).__name__})") from None
    raise ValueError(f"image must be a picture or a base64 string, got {type(value).__name__}")


def _slider_value(value: Any, slider: Slider, name: str, kind: type = float) -> Any:
    """A resolution or threshold: -1 (or absent) is the module's default; else it must be in the slider's range."""
    if not slider.visible:  # the module does not use it: the extension keeps the hidden default, whatever was sent
        return slider.value
    number = _number(value, name, kind if value != -1 else float)
    if number == -1:
        return slider.value if kind is float else int(slider.value)
    if not slider.minimum <= number <= slider.maximum:
        raise ValueError(f"{name} must be between {slider.minimum:g} and {slider.maximum:g} for this module "
                         f"({slider.label}), or -1 for its default {slider.value:g}; got {value!r}")
    return kind(number) if kind is int else number


def _check_module_fields(unit: ControlNetUnit, errors: dict[str, str], prefix: str) -> ControlNetUnit:
    p = get_preprocessor(unit.module)
    if p is None:
        errors[prefix + "module"] = (f"unknown ControlNet module {unit.module!r}; known: "
                                     f"{', '.join(module_list())}")
        return unit
    values = {}
    for name, slider, kind in (("processor_res", p.resolution, int), ("threshold_a", p.slider_1, float),
                               ("threshold_b", p.slider_2, float)):
        try:
            values[name] = _slider_value(getattr(unit, name), slider, name, kind)
        except ValueError as err:
            errors[prefix + name] = str(err)
    return unit.model_copy(update=values)


def _check_numbers(unit: ControlNetUnit, errors: dict[str, str], prefix: str) -> None:
    if not 0.0 <= unit.weight <= MAX_CONTROL_WEIGHT:
        errors[prefix + "weight"] = f"weight must be between 0 and {MAX_CONTROL_WEIGHT:g}, got {unit.weight:g}"
    for name in ("guidance_start", "guidance_end"):
        if not 0.0 <= getattr(unit, name) <= 1.0:
            errors[prefix + name] = f"{name} must be between 0 and 1 (a fraction of the steps), got " \
                                    f"{getattr(unit, name):g}"
    if unit.guidance_start > unit.guidance_end:
        errors[prefix + "guidance_start"] = (f"guidance_start ({unit.guidance_start:g}) must not be after "
                                             f"guidance_end ({unit.guidance_end:g})")


def _check_model(unit: ControlNetUnit, models: list[str] | None, errors: dict[str, str], prefix: str) -> ControlNetUnit:
    if models is None:
        return unit
    listing = ", ".join(models) if models else "none (put ControlNet folders in the controlnet directory)"
    if unit.model in ("", "None", None):
        errors[prefix + "model"] = f"choose a ControlNet model for this unit; available: {listing}"
        return unit
    for name in models:  # the full "name [hash]" or the name alone, as clients write either
        if unit.model in (name, name.split(" [")[0]):
            return unit.model_copy(update={"model": name})
    errors[prefix + "model"] = f"unknown ControlNet model {unit.model!r}; available: {listing}"
    return unit


_CONVERT = {"weight": lambda v: _number(v, "weight"), "guidance_start": lambda v: _number(v, "guidance_start"),
            "guidance_end": lambda v: _number(v, "guidance_end"), "control_mode": control_mode_of,
            "resize_mode": resize_mode_of, "pixel_perfect": lambda v: _flag(v, "pixel_perfect"),
            "enabled": lambda v: _flag(v, "enabled"), "module": str, "model": str, "image": decode_image,
            "processor_res": lambda v: _number(v, "processor_res"), "threshold_a": lambda v: _number(v, "threshold_a"),
            "threshold_b": lambda v: _number(v, "threshold_b")}


def make_unit(values: dict[str, Any], index: int = 0, models: list[str] | None = None) -> ControlNetUnit:
    """A checked unit from field values (this module's names); ``models`` are the available ControlNets
    ("name [hash]"), None to leave the model unchecked. Raises ControlUnitError naming each bad field."""
    prefix = f"controlnet.{index}."
    errors: dict[str, str] = {}
    known = set(ControlNetUnit.model_fields)
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        if name not in known or value is None:
            continue
        try:
            kwargs[name] = _CONVERT[name](value) if name in _CONVERT else value
        except ValueError as err:
            errors[prefix + name] = f"ControlNet unit {index}: {err}"
    unit = ControlNetUnit(**kwargs)
    if unit.enabled:
        unit = _check_module_fields(unit, errors, prefix)
        _check_numbers(unit, errors, prefix)
        unit = _check_model(unit, models, errors, prefix)
    if errors:
        raise ControlUnitError({k: v if v.startswith("ControlNet unit") else f"ControlNet unit {index}: {v}"
                                for k, v in errors.items()})
    return unit


def unit_from_api(data: dict[str, Any], index: int = 0, models: list[str] | None = None) -> ControlNetUnit:
    """A unit from sd-webui-controlnet's API JSON (``alwayson_scripts.controlnet.args[i]``): its names, the old
    aliases ``input_image`` and ``guidance``, ``control_mode`` and ``resize_mode`` as names or numbers, fields the
    unit does not use (``low_vram``, ``mask``, …) ignored as the extension ignores them; ``enabled`` defaults to
    true here because a unit sent through the API is meant to run."""
    values: dict[str, Any] = {}
    for key, value in data.items():
        name = API_ALIASES.get(key, key)
        if name != key and name in data:
            raise ControlUnitError({f"controlnet.{index}.{key}": f"ControlNet unit {index}: give either {key!r} or "
                                                                 f"{name!r}, not both"})
        values[name] = value
    return make_unit(values, index, models)


def parse_infotext(text: str) -> ControlNetUnit:
    """A unit (without its picture) from its infotext value, the extension's ``ControlNetUnit.parse``."""
    values: dict[str, Any] = {}
    for item in text.split(","):
        key, sep, raw = item.strip().partition(": ")
        if not sep:
            raise ControlUnitError({"controlnet.infotext": f"ControlNet infotext item {item.strip()!r} is not "
                                                           "'Key: value'"})
        values["_".join(w.lower() for w in key.split(" "))] = _parse_value(raw)
    return make_unit(values)


def _parse_value(value: str) -> Any:
    if value in ("True", "False"):
        return value == "True"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            continue
    return value


def infotext_params(units: list[ControlNetUnit]) -> dict[str, str]:
    """``{"ControlNet 0": "Module: …", …}`` for the enabled units, numbered by their place in the list."""
    return control_infotext(units)
