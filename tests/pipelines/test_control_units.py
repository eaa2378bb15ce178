"""ControlNet units: sd-webui-controlnet's API names, the checks with messages naming the field, and its infotext."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from pipelines.control_units import (
    ControlUnitError,
    infotext_params,
    make_unit,
    parse_infotext,
    unit_from_api,
)

MODELS = ["control_canny [d14c016b]", "tiny-cn-sdxl [0123abcd]"]


def png_b64(image: Image.Image) -> str:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def test_the_api_fields_map_onto_the_unit() -> None:
    picture = Image.new("RGB", (8, 8), "red")
    unit = unit_from_api({"module": "canny", "model": "control_canny", "weight": 0.8, "input_image": png_b64(picture),
                          "guidance": 0.6, "control_mode": 2, "resize_mode": "Inner Fit (Scale to Fit)",
                          "pixel_perfect": True, "processor_res": 256, "threshold_a": 50, "threshold_b": 150,
                          "low_vram": True, "mask": None}, models=MODELS)
    assert unit.model == "control_canny [d14c016b]"  # the name alone finds the listed model
    assert unit.image is not None
    assert unit.image.getpixel((0, 0)) == (255, 0, 0)
    assert (unit.weight, unit.guidance_start, unit.guidance_end) == (0.8, 0.0, 0.6)
    assert unit.control_mode == "ControlNet is more important"
    assert unit.resize_mode == "Crop and Resize"
    assert (unit.pixel_perfect, unit.processor_res, unit.threshold_a, unit.threshold_b) == (True, 256, 50.0, 150.0)
    named = unit_from_api({"module": "softedge_hed", "control_mode": "My prompt is more important",
                           "resize_mode": 0, "image": "data:image/png;base64," + png_b64(picture)})
    assert (named.module, named.control_mode, named.resize_mode) == ("softedge_hed", "My prompt is more important",
                                                                      "Just Resize")
    assert unit_from_api({"resize_mode": 3}).resize_mode == "Just Resize"  # A1111's latent resize
    assert not unit_from_api({"enabled": False, "weight": 99}).enabled  # a disabled unit is not checked


def test_defaults_fill_in_as_the_extension_fills_them() -> None:
    canny = make_unit({"module": "canny"})
    assert (canny.processor_res, canny.threshold_a, canny.threshold_b) == (512, 100.0, 200.0)
    # Unused sliders keep the extension's hidden default (0..1, 0.5), whatever was sent.
    none = make_unit({"module": "none", "threshold_a": 64})
    assert (none.processor_res, none.threshold_a, none.threshold_b) == (512, 0.5, 0.5)
    assert make_unit({"module": "invert", "processor_res": 512}).processor_res == 0.5


@pytest.mark.parametrize(("values", "field", "message"), [
    ({"guidance_start": 0.7, "guidance_end": 0.3}, "guidance_start", r"guidance_start \(0.7\) must not be after"),
    ({"weight": 2.5}, "weight", "weight must be between 0 and 2"),
    ({"weight": "heavy"}, "weight", "weight must be a number"),
    ({"guidance_end": 1.5}, "guidance_end", "between 0 and 1"),
    ({"module": "depth_magic"}, "module", "unknown ControlNet module 'depth_magic'; known: none, "),
    ({"module": "canny", "threshold_a": 300}, "threshold_a", r"between 1 and 255 for this module \(Low Threshold\)"),
    ({"module": "canny", "processor_res": 8}, "processor_res", "between 64 and 2048"),
    ({"module": "canny", "processor_res": 512.5}, "processor_res", "processor_res must be a whole number"),
    ({"control_mode": 5}, "control_mode", "control_mode must be one of 'Balanced'"),
    ({"resize_mode": "Stretch"}, "resize_mode", "resize_mode must be one of 'Just Resize'"),
    ({"image": "not base64!"}, "image", "image is not a readable picture"),
    ({"pixel_perfect": "maybe"}, "pixel_perfect", "pixel_perfect must be true or false"),
    ({"model": "other"}, "model", r"unknown ControlNet model 'other'; available: control_canny \[d14c016b\]"),
    ({"model": "None"}, "model", "choose a ControlNet model"),
])
def test_bad_fields_are_named(values: dict[str, object], field: str, message: str) -> None:
    with pytest.raises(ControlUnitError, match=message) as caught:
        make_unit({"model": "control_canny", **values}, index=2, models=MODELS)
    assert list(caught.value.errors) == [f"controlnet.2.{field}"]
    assert str(caught.value).startswith("ControlNet unit 2: ")


def test_an_alias_and_its_field_together_are_refused() -> None:
    with pytest.raises(ControlUnitError, match="either 'input_image' or 'image'"):
        unit_from_api({"image": "x", "input_image": "y"})


def test_every_bad_field_is_reported_at_once() -> None:
    with pytest.raises(ControlUnitError) as caught:
        make_unit({"module": "canny", "weight": -1, "threshold_b": 0, "guidance_end": 2})
    assert set(caught.value.errors) == {"controlnet.0.weight", "controlnet.0.threshold_b", "controlnet.0.guidance_end"}


def test_the_infotext_is_the_extensions() -> None:
    unit = make_unit({"module": "canny", "model": "control_canny [d14c016b]"})
    # A default threshold is the slider's value as the extension stores it (100), a sent one a float (100.0).
    text = ("Module: canny, Model: control_canny [d14c016b], Weight: 1.0, Resize Mode: Crop and Resize, "
            "Processor Res: 512, Threshold A: 100, Threshold B: 200, Guidance Start: 0.0, Guidance End: 1.0, "
            "Pixel Perfect: False, Control Mode: Balanced")
    assert unit.infotext() == text
    assert "Threshold A: 100.0, " in make_unit({"module": "canny", "threshold_a": 100}).infotext()
    off = make_unit({"enabled": False})
    other = make_unit({"module": "none", "model": "x", "weight": 0.5, "control_mode": 1})
    assert infotext_params([unit, off, other]) == {"ControlNet 0": text, "ControlNet 2": other.infotext()}
    assert "Threshold A: 0.5, Threshold B: 0.5" in other.infotext()
    assert make_unit({"model": "a, b"}).infotext() == ""  # would not read back: the extension writes nothing


def test_the_infotext_reads_back_through_the_png_parameters() -> None:
    from storage.files import parse_parameters, quote

    unit = make_unit({"module": "lineart_standard", "model": "m [12345678]", "weight": 0.75, "guidance_start": 0.1,
                      "guidance_end": 0.9, "control_mode": 2, "resize_mode": 2, "pixel_perfect": True})
    line = f"Steps: 20, Sampler: Euler a, ControlNet 0: {quote(unit.infotext())}"
    assert 'ControlNet 0: "Module: lineart_standard, ' in line
    value = parse_parameters(f"a cat\n{line}")["ControlNet 0"]
    assert parse_infotext(value) == unit
    with pytest.raises(ControlUnitError, match="is not 'Key: value'"):
        parse_infotext("Module canny")
