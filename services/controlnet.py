"""ControlNet units as every door sends them: checked into contracts.ControlNetUnit (their pictures read within the
upload limits, their models looked up in ``<data>/controlnet``, their family matched to the checkpoint's), and the
preprocessed map of one unit for a preview before generating.

A unit arrives as a dict in sd-webui-controlnet's names (``module``, ``model``, ``weight``, ``guidance_start``…; its
aliases too, see pipelines/control_units.py) whose ``image`` is a PIL image (in-process callers), an upload's bytes,
or base64 (a data: URL or bare, as A1111's API sends it). A path is never taken from a unit: a JSON body could name
any file of the server, and only Gradio's file components are vouched for by the gateway.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from contracts import MAX_CONTROLNET_UNITS, ControlNetUnit, InvalidRequest, excerpt
from pipelines.control_preprocessors import (
    MapTooLarge,
    PreprocessorUnavailable,
    check_map_size,
    get_preprocessor,
    module_detail,
    module_list,
    pixel_perfect_resolution,
)
from pipelines.control_units import ControlUnitError, unit_from_api
from pipelines.controlnet import check_families, control_image, detected_map
from services import uploads


def read_units(raw: Any, models: dict[str, Path] | None, limits: uploads.UploadLimits
               ) -> tuple[list[ControlNetUnit], dict[str, str]]:
    """The checked units of a request and {field: message} for each bad value (``controlnet.<i>.<field>``);
    ``models`` are the available ControlNets by listed name, None to leave the names to a remote server."""
    if raw is None or raw == "":
        return [], {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return [], {"controlnet": "controlnet must be a list of units (JSON objects), got text that is not JSON."}
    if not isinstance(raw, list | tuple):
        return [], {"controlnet": f"controlnet must be a list of units, got {type(raw).__name__}."}
    if len(raw) > MAX_CONTROLNET_UNITS:
        return [], {"controlnet": f"controlnet has {len(raw)} units; at most {MAX_CONTROLNET_UNITS} are allowed."}
    units: list[ControlNetUnit] = []
    errors: dict[str, str] = {}
    names = list(models) if models is not None else None
    for i, values in enumerate(raw):
        try:
            units.append(_unit(values, i, names, limits))
        except ControlUnitError as err:
            errors.update(err.errors)
        except InvalidRequest as err:
            errors.update(err.errors)
    return units, errors


def _unit(values: Any, index: int, names: list[str] | None, limits: uploads.UploadLimits) -> ControlNetUnit:
    if isinstance(values, ControlNetUnit):
        values = {**values.model_dump(), "image": values.image}
    if not isinstance(values, dict):
        raise ControlUnitError({f"controlnet.{index}": f"ControlNet unit {index} must be an object of unit fields, "
                                                       f"got {type(values).__name__}."})
    values = dict(values)
    key = "image" if "image" in values else "input_image" if "input_image" in values else ""
    if key and values[key] is not None:
        values[key] = read_picture(values[key], f"controlnet.{index}.image", limits)
    return unit_from_api(values, index, names)


def read_picture(value: Any, field: str, limits: uploads.UploadLimits) -> Image.Image:
    """A unit's picture, decoded within the upload limits (type, bytes, pixels), in RGB."""
    if isinstance(value, Image.Image):
        if value.width * value.height > limits.max_pixels:
            raise InvalidRequest({field: f"{field}: the image is {value.width}x{value.height}; at most "
                                         f"{limits.max_pixels:,} pixels are allowed."})
        return uploads.to_rgb(value, field)
    if isinstance(value, dict) and isinstance(value.get("url"), str) and value["url"].startswith("data:"):
        value = value["url"]  # Gradio's FileData for an image sent inline
    elif isinstance(value, dict) and isinstance(value.get("image"), str):
        value = value["image"]  # the extension's {"image": …, "mask": …} (its mask is for inpaint units)
    if isinstance(value, str):
        data = value.split(",", 1)[1] if value.startswith("data:") else value
        try:
            value = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest({field: f"{field}: the image must be base64 (or a data: URL), got "
                                         f"{excerpt(value)}."}) from None
    if not isinstance(value, bytes | bytearray | memoryview):
        raise InvalidRequest({field: f"{field}: the image must be base64 (or a data: URL), got "
                                     f"{type(value).__name__}."})
    return uploads.read_image(bytes(value), field, limits, mask=False)


def check_family(units: list[ControlNetUnit], models: dict[str, Path], family: str | None) -> dict[str, str]:
    """{controlnet.<i>.model: message} for each unit whose ControlNet is of another family than the checkpoint
    (``family``: "sd15", "sd2", "sdxl"; None when it is not known before loading: the backend checks then)."""
    if family is None or not units:
        return {}
    try:
        check_families(units, models, family)
    except ControlUnitError as err:
        return dict(err.errors)
    return {}


def map_size_errors(units: list[ControlNetUnit], sizes: list[tuple[int, int]],
                    fallback: Image.Image | None) -> dict[str, str]:
    """{controlnet.<i>.image: message} for each unit whose picture (else ``fallback``, the img2img picture), scaled to
    its processor resolution at each pass's (width, height), would be more pixels than a map may have."""
    errors: dict[str, str] = {}
    for i, unit in enumerate(units):
        picture = unit.image if unit.image is not None else fallback
        preprocessor = get_preprocessor(unit.module)
        if not unit.enabled or picture is None or preprocessor is None or not preprocessor.resolution.visible:
            continue
        shape = np.broadcast_to(np.uint8(0), (picture.height, picture.width))  # the shape alone, no pixels
        for width, height in sizes:
            resolution = pixel_perfect_resolution(shape, height, width, unit.resize_mode) if unit.pixel_perfect \
                else int(unit.processor_res)
            try:
                check_map_size(picture.height, picture.width, resolution)
            except MapTooLarge as err:
                errors[f"controlnet.{i}.image"] = f"ControlNet unit {i}: {err}"
                break
    return errors


def preview_map(unit: ControlNetUnit, width: int, height: int, annotators: Path | None) -> Image.Image:
    """The map a unit's preprocessor makes of its picture at the job's size, as the ControlNet will see it;
    InvalidRequest naming the field when the unit has no picture or the module's weights are missing."""
    if unit.image is None:
        raise InvalidRequest({"controlnet.0.image": "ControlNet unit 0: give a picture to preview its map."})
    try:
        return control_image(unit, width, height, annotators)
    except PreprocessorUnavailable as err:
        raise InvalidRequest({"controlnet.0.module": f"ControlNet unit 0: {err}"}) from err
    except MapTooLarge as err:
        raise InvalidRequest({"controlnet.0.image": f"ControlNet unit 0: {err}"}) from err


def preview(values: dict[str, Any], width: int, height: int, annotators: Path | None,
            limits: uploads.UploadLimits) -> Image.Image:
    """The preprocessed map of one unit's picture (a PIL image, base64, or a Path to a file the caller vouches for:
    an upload Gradio received) at the job's size; InvalidRequest naming each bad field."""
    values = dict(values)
    picture = values.get("image")
    if isinstance(picture, Path):
        values["image"] = uploads.read_image(picture, "controlnet.0.image", limits, mask=False)
    elif picture is not None:
        values["image"] = read_picture(picture, "controlnet.0.image", limits)
    values["model"] = "None"  # a preview runs no ControlNet
    try:
        unit = unit_from_api(values, 0, None)
    except ControlUnitError as err:
        raise InvalidRequest(err.errors) from None
    return preview_map(unit, width, height, annotators)


# /controlnet/detect's field names for a unit's (sd-webui-controlnet's api.py).
DETECT_FIELDS = {"module": "controlnet_module", "processor_res": "controlnet_processor_res",
                 "threshold_a": "controlnet_threshold_a", "threshold_b": "controlnet_threshold_b"}
DETECT_IMAGES = "controlnet_input_images"


def detect(module: str, pictures: list[Any], processor_res: float, threshold_a: float, threshold_b: float,
           annotators: Path | None, limits: uploads.UploadLimits) -> list[Image.Image]:
    """sd-webui-controlnet's /controlnet/detect: each picture (base64, bytes or PIL) through one preprocessor at the
    processor resolution (-1: the module's default), the maps as the preprocessor makes them (not fitted to a job
    size); InvalidRequest naming each bad field in the route's names."""
    if not pictures:
        raise InvalidRequest({DETECT_IMAGES: f"{DETECT_IMAGES}: send at least one picture (base64)."})
    if len(pictures) > MAX_CONTROLNET_UNITS:
        raise InvalidRequest({DETECT_IMAGES: f"{DETECT_IMAGES}: {len(pictures)} pictures; at most "
                                             f"{MAX_CONTROLNET_UNITS} per request."})
    errors: dict[str, str] = {}
    unit = None
    try:
        unit = unit_from_api({"module": module, "model": "None", "processor_res": processor_res,
                              "threshold_a": threshold_a, "threshold_b": threshold_b})
    except ControlUnitError as err:
        for key, message in err.errors.items():
            field = DETECT_FIELDS.get(key.rsplit(".", 1)[-1], key)
            errors[field] = f"{field}: {message.removeprefix('ControlNet unit 0: ')}"
    images = []
    for i, picture in enumerate(pictures):  # each decoded within the upload limits, never one unbounded
        try:
            images.append(read_picture(picture, f"{DETECT_IMAGES}.{i}", limits))
        except InvalidRequest as err:
            errors |= err.errors
    if errors or unit is None:
        raise InvalidRequest(errors)
    maps = []
    for i, image in enumerate(images):
        try:
            maps.append(Image.fromarray(detected_map(unit, image, unit.processor_res, annotators)))
        except PreprocessorUnavailable as err:
            raise InvalidRequest({DETECT_FIELDS["module"]: f"{DETECT_FIELDS['module']}: {err}"}) from err
        except MapTooLarge as err:
            raise InvalidRequest({f"{DETECT_IMAGES}.{i}": f"{DETECT_IMAGES}.{i}: {err}"}) from err
    return maps


def modules(alias_names: bool = False) -> dict[str, Any]:
    """sd-webui-controlnet's /controlnet/module_list answer: the modules and their sliders."""
    return {"module_list": module_list(alias_names), "module_detail": module_detail(alias_names)}


# Words a control type's models may carry besides its own name (the extension's Preprocessor.tag_to_filters).
TYPE_WORDS = {"openpose": ("densepose",), "scribble": ("sketch",), "tile": ("blur",)}


def control_types(models: list[str]) -> dict[str, Any]:
    """sd-webui-controlnet's /controlnet/control_types for the ControlNets listed: per control type (a module tag),
    its modules (UI labels), the models whose names carry the type, and the defaults its UI picks."""
    labels = module_list(alias_names=True)
    out = {"All": {"module_list": labels, "model_list": ["None", *models], "default_option": "none",
                   "default_model": "None"}}
    tags = sorted({tag for label in labels for tag in getattr(get_preprocessor(label), "tags", ())})
    for tag in tags:
        words = (tag.lower(), *TYPE_WORDS.get(tag.lower(), ()))
        matching = ["None", *(m for m in models if any(w in m.lower() for w in words))]
        chosen = [label for label in labels if label == "none" or tag in getattr(get_preprocessor(label), "tags", ())]
        # The extension prefers a v1.1 model ("11" in its name) as the default, else the first.
        default = next((m for m in matching[1:] if "11" in m.split("[")[0]), matching[1]) if len(matching) > 1 \
            else "None"
        out[tag] = {"module_list": chosen, "model_list": matching,
                    "default_option": chosen[1] if len(chosen) > 1 else chosen[0], "default_model": default}
    return out
