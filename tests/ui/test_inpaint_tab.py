"""The inpaint tab's editor value becomes an init image and a mask: the strokes (alpha) of every layer, an uploaded
mask, or both; nothing painted and no image get a message."""

from __future__ import annotations

import gradio as gr
import numpy as np
import pytest
from PIL import Image, ImageDraw

from ui.inpaint_tab import drawn_mask, split_editor


def stroke_layer(size: tuple[int, int], box: tuple[int, int, int, int], alpha: int = 255) -> Image.Image:
    """A transparent layer with one white rectangle painted on it, as the editor's brush leaves it."""
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    ImageDraw.Draw(layer).rectangle(box, fill=(255, 255, 255, alpha))
    return layer


def editor_value(size: tuple[int, int] = (64, 48), layers: list[Image.Image] | None = None) -> dict[str, object]:
    background = Image.new("RGBA", size, (10, 120, 200, 255))
    return {"background": background, "layers": layers or [], "composite": background}


def test_the_strokes_of_a_layer_are_the_mask_and_the_background_the_init_image() -> None:
    init, mask = split_editor(editor_value(layers=[stroke_layer((64, 48), (8, 8, 23, 15))]), None)
    assert init.mode == "RGB"
    assert init.size == (64, 48)
    assert init.getpixel((0, 0)) == (10, 120, 200)
    assert mask.mode == "L"
    assert mask.size == (64, 48)
    pixels = np.asarray(mask)
    assert pixels[8:16, 8:24].min() == 255  # painted: repaint
    assert pixels.sum() == 255 * 16 * 8  # nothing else


def test_strokes_of_several_layers_add_up_and_a_layer_of_another_size_is_scaled() -> None:
    mask = drawn_mask([stroke_layer((64, 48), (0, 0, 7, 7)), stroke_layer((64, 48), (56, 40, 63, 47))], (128, 96))
    assert mask is not None
    assert mask.size == (128, 96)
    pixels = np.asarray(mask)
    assert pixels[2, 2] == 255
    assert pixels[93, 125] == 255
    assert pixels[48, 64] == 0


def test_an_uploaded_mask_is_used_alone_or_together_with_the_strokes() -> None:
    uploaded = Image.new("L", (32, 24), 0)
    ImageDraw.Draw(uploaded).rectangle((0, 0, 15, 23), fill=255)  # the left half, at half the size
    _, alone = split_editor(editor_value(), uploaded)
    assert alone.size == (64, 48)
    assert np.asarray(alone)[:, :30].min() == 255
    assert np.asarray(alone)[:, 34:].max() == 0
    _, both = split_editor(editor_value(layers=[stroke_layer((64, 48), (56, 0, 63, 7))]), uploaded)
    assert np.asarray(both)[2, 60] == 255
    assert np.asarray(both)[:, :30].min() == 255
    assert np.asarray(both)[40, 60] == 0


def test_nothing_painted_or_no_image_gets_a_message() -> None:
    with pytest.raises(gr.Error, match="Paint over the part to repaint"):
        split_editor(editor_value(layers=[Image.new("RGBA", (64, 48), (0, 0, 0, 0))]), None)
    with pytest.raises(gr.Error, match="Upload the image to inpaint first"):
        split_editor(None, None)
    with pytest.raises(gr.Error, match="Upload the image to inpaint first"):
        split_editor({"background": None, "layers": [], "composite": None}, Image.new("L", (8, 8), 255))
