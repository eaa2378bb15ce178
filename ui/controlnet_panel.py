"""The ControlNet panel of the image tabs (units as sd-webui-controlnet shows them: picture, preprocessor, model,
weight, guidance start/end, control mode, resize mode, pixel perfect, processor resolution, thresholds, and the
preprocessed map before generating), and the `/controlnet_preview` API.

A tab's job endpoint takes the units as one JSON parameter, `controlnet`: a list of units in sd-webui-controlnet's
API names, each picture as base64 (services/controlnet.py checks them). The panel's widgets are not endpoint
parameters: Generate first packs the enabled units into that JSON (a private step), then runs the job.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from contracts import CONTROL_MODES, CONTROL_RESIZE_MODES, MAX_CONTROL_WEIGHT, InvalidRequest
from services import controlnet
from services.container import Services
from services.uploads import UploadLimits, read_image
from ui.common import DECODING, PRIVATE, error_toast, read_api

UNITS_SHOWN = 2  # unit tabs in the panel (the API takes up to contracts.MAX_CONTROLNET_UNITS)
# The unit fields each tab's widgets give, in order (sd-webui-controlnet's names; "image" is the picture).
UNIT_FIELDS = ("enabled", "image", "module", "model", "weight", "guidance_start", "guidance_end", "control_mode",
               "resize_mode", "pixel_perfect", "processor_res", "threshold_a", "threshold_b")
PICTURE_SIDE = 1024  # a picture is sent at most this long a side: the preprocessors work at 512 by default


def units_json() -> gr.JSON:
    """The hidden `controlnet` parameter: a gr.JSON whose API schema says what it takes. gr.JSON's own says "any"
    with the type `{}`, which no JSON Schema validator accepts (MCP's refused every call of the tool). Its public
    api_info is replaced on this one component: a subclass would be a custom component, for which Gradio writes a
    .pyi stub next to this module at import."""
    component = gr.JSON([], visible=False)

    def api_info() -> dict[str, Any]:
        return {"type": "array", "items": {"type": "object"},
                "description": "ControlNet units in sd-webui-controlnet's names (image as base64)"}

    component.api_info = api_info  # type: ignore[method-assign]
    return component


@dataclass
class ControlNetPanel:
    """The hidden `controlnet` parameter and the widgets of each unit (UNIT_FIELDS order)."""

    units_json: gr.JSON
    widgets: list[list[gr.components.Component]]
    limits: UploadLimits

    def packed(self, trigger: Callable[..., Any]) -> Callable[..., Any]:
        """`trigger` (a Generate button's click) made to pack the panel's units into `units_json` first; returns
        what runs the job after it (the pack event's .success)."""
        flat = [w for unit in self.widgets for w in unit]

        def pack_units(*values: Any) -> list[dict[str, Any]]:
            try:
                return units_of(values, self.limits)
            except InvalidRequest as err:
                raise error_toast(str(err)) from None

        # Raw values: Gradio would decode each picture in full before any check of ours (DECODING).
        return trigger(pack_units, inputs=flat, outputs=[self.units_json], **DECODING, **PRIVATE).success


def units_of(values: tuple[Any, ...], limits: UploadLimits) -> list[dict[str, Any]]:
    """The enabled units of the panel's raw values as the `controlnet` JSON (pictures as base64 PNG, each decoded
    through the upload limits from the file the gateway checked is this user's)."""
    units = []
    per_unit = len(UNIT_FIELDS)
    for index, start in enumerate(range(0, len(values), per_unit)):
        unit = dict(zip(UNIT_FIELDS, values[start:start + per_unit], strict=True))
        if not unit.pop("enabled"):
            continue
        picture = unit.pop("image")
        path = picture.get("path") if isinstance(picture, dict) else None
        image = read_image(Path(path), f"controlnet.{index}.image", limits, mask=False) if path else None
        units.append({**unit, "image": _base64(image) if image is not None else None})
    return units


def _base64(picture: Image.Image) -> str:
    picture = picture.copy()
    picture.thumbnail((PICTURE_SIDE, PICTURE_SIDE))
    out = io.BytesIO()
    picture.save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def render(services: Services, prefix: str, width: gr.components.Component,
           height: gr.components.Component) -> ControlNetPanel:
    """The panel inside the current layout; `width` and `height` are the tab's size widgets (the preview's size)."""
    models = list(services.catalog.controlnets())
    modules = controlnet.modules(alias_names=True)["module_list"]  # as the extension's panel names them
    widgets = []
    with gr.Accordion("ControlNet", open=False, elem_id=f"{prefix}-controlnet"):
        with gr.Tabs():
            for i in range(UNITS_SHOWN):
                with gr.Tab(f"Unit {i}", elem_id=f"{prefix}-controlnet-unit-{i}"):
                    widgets.append(_unit(services, f"{prefix}-controlnet-{i}", models, modules, width, height))
        refresh = gr.Button("Refresh ControlNet models", size="sm", elem_id=f"{prefix}-controlnet-refresh")
        units = units_json()

    def relist() -> list[gr.Dropdown]:
        names = list(services.catalog.controlnets())
        return [gr.Dropdown(choices=names) for _ in widgets]

    refresh.click(relist, outputs=[unit[3] for unit in widgets], concurrency_limit=None, **PRIVATE)
    return ControlNetPanel(units, widgets, services.images.upload_limits)


def _unit(services: Services, eid: str, models: list[str], modules: list[str], width: gr.components.Component,
          height: gr.components.Component) -> list[gr.components.Component]:
    enabled = gr.Checkbox(False, label="Enable", elem_id=f"{eid}-enabled")
    with gr.Row():
        image = gr.Image(label="Control picture", sources=["upload", "clipboard"], type="pil", height=240,
                         elem_id=f"{eid}-image")
        detected = gr.Image(label="Preprocessed map", interactive=False, height=240, elem_id=f"{eid}-map")
    with gr.Row():
        module = gr.Dropdown(modules, value="none", label="Preprocessor", elem_id=f"{eid}-module")
        model = gr.Dropdown(models, value=models[0] if models else None, label="Model", elem_id=f"{eid}-model")
        preview = gr.Button("Preview map", size="sm", elem_id=f"{eid}-preview")
    with gr.Row():
        weight = gr.Slider(0, MAX_CONTROL_WEIGHT, value=1.0, step=0.05, label="Control weight")
        start = gr.Slider(0, 1, value=0.0, step=0.01, label="Starting control step")
        end = gr.Slider(0, 1, value=1.0, step=0.01, label="Ending control step")
    with gr.Row():
        control_mode = gr.Radio(list(CONTROL_MODES), value=CONTROL_MODES[0], label="Control mode")
        resize_mode = gr.Radio(list(CONTROL_RESIZE_MODES), value="Crop and Resize", label="Resize mode")
    with gr.Row():
        pixel_perfect = gr.Checkbox(False, label="Pixel perfect")
        processor_res = gr.Number(-1, precision=0, label="Preprocessor resolution (-1: the module's)")
        threshold_a = gr.Number(-1, label="Threshold A (-1: the module's)")
        threshold_b = gr.Number(-1, label="Threshold B (-1: the module's)")
    fields = [enabled, image, module, model, weight, start, end, control_mode, resize_mode, pixel_perfect,
              processor_res, threshold_a, threshold_b]

    def show_map(*values: Any) -> Image.Image:
        *unit_values, w, h = values
        unit = dict(zip(UNIT_FIELDS, unit_values, strict=True))
        unit.pop("enabled")
        # Raw values (Gradio decodes nothing here): the picture is the upload's file, which the gateway checked is
        # this user's; services.controlnet decodes it through the upload limits.
        picture = unit.get("image")
        unit["image"] = Path(picture["path"]) if isinstance(picture, dict) and picture.get("path") else None
        try:
            return controlnet.preview(unit, int(w), int(h), services.settings.annotators_dir,
                                      services.images.upload_limits)
        except InvalidRequest as err:
            raise error_toast(str(err)) from None

    preview.click(show_map, inputs=[*fields, width, height], outputs=[detected], **DECODING, **PRIVATE)
    return fields


def register_preview(services: Services) -> None:
    """`/controlnet_preview`: the map a preprocessor makes of a picture, as a ControlNet unit would see it."""

    def controlnet_preview(image: dict[str, Any] | None, module: str = "canny", width: int = 512, height: int = 512,
                           processor_res: float = -1, threshold_a: float = -1, threshold_b: float = -1,
                           pixel_perfect: bool = False, resize_mode: str = "Crop and Resize") -> dict[str, Any]:
        """The preprocessed map of `image` through `module` at the job size (width x height), with the unit's
        resolution and thresholds (-1: the module's defaults): {"image": a PNG data URL, "width", "height"}."""

        # The raw value of an uploaded file: the gateway checked that this user uploaded it.
        unit = {"image": Path(image["path"]) if image else None, "module": module, "processor_res": processor_res,
                "threshold_a": threshold_a, "threshold_b": threshold_b, "pixel_perfect": pixel_perfect,
                "resize_mode": resize_mode}
        try:
            picture = controlnet.preview(unit, int(width), int(height), services.settings.annotators_dir,
                                         services.images.upload_limits)
        except InvalidRequest as err:
            raise error_toast(str(err)) from None
        return {"image": "data:image/png;base64," + _base64(picture), "width": picture.width,
                "height": picture.height}

    limits = services.images.limits
    with gr.Row(visible=False):
        fields = {"image": gr.Image(type="filepath"), "module": gr.Textbox(),
                  "width": gr.Number(512, precision=0, minimum=limits.min_size, maximum=limits.max_size),
                  "height": gr.Number(512, precision=0, minimum=limits.min_size, maximum=limits.max_size),
                  "processor_res": gr.Number(-1, minimum=-1, maximum=2048),
                  "threshold_a": gr.Number(-1), "threshold_b": gr.Number(-1), "pixel_perfect": gr.Checkbox(False),
                  "resize_mode": gr.Textbox()}
        read_api(controlnet_preview, "controlnet_preview", fields, decodes=True)
