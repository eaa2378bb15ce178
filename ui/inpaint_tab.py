"""The inpaint tab: draw a mask over an image (or upload one) and repaint it; the `/inpaint` API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr
from PIL import Image, ImageChops

from contracts import MAX_FULL_RES_PADDING, MAX_MASK_BLUR
from services.admission import QueueQuota
from services.container import Services
from ui import image_form
from ui.common import PRIVATE
from ui.image_form import A1111_DEFAULTS as DEFAULTS

# The parameters of /inpaint, in order: img2img's (before the model choice), the mask and its options, the model.
PARAM_NAMES = (*image_form.TXT2IMG_NAMES, *image_form.IMG2IMG_NAMES, *image_form.INPAINT_NAMES,
               *image_form.MODEL_NAMES)
# A white brush only: what is painted is the mask (its alpha), whatever the colour, but white reads as "repaint".
BRUSH = gr.Brush(colors=["#ffffff"], color_mode="fixed")


@dataclass
class InpaintTab:
    """The components PNG Info fills ("Send to inpaint"): the settings by name and the editor."""

    fields: dict[str, gr.components.Component]
    editor: gr.ImageEditor


def drawn_mask(layers: list[Image.Image], size: tuple[int, int]) -> Image.Image | None:
    """The strokes of every layer as one "L" mask of `size` (painted = white), or None when nothing is painted."""
    mask: Image.Image | None = None
    for layer in layers:
        if "A" not in layer.getbands():
            continue  # a layer without alpha holds no strokes apart from its background
        alpha = layer.getchannel("A")
        mask = alpha if mask is None else ImageChops.lighter(mask, alpha.resize(mask.size))
    if mask is None or mask.getbbox() is None:
        return None
    return mask if mask.size == size else mask.resize(size, Image.Resampling.BILINEAR)


def split_editor(editor: dict[str, Any] | None, uploaded_mask: Image.Image | None
                 ) -> tuple[Image.Image, Image.Image]:
    """The editor's background as the init image, and the mask: the strokes drawn over it and the uploaded mask
    together (white = repaint)."""
    background = (editor or {}).get("background")
    if background is None:
        raise gr.Error("Upload the image to inpaint first (drop it on the editor).")
    # Transparent parts of the picture become white, as services/uploads.py reads an uploaded init image.
    init = Image.alpha_composite(Image.new("RGBA", background.size, "white"), background.convert("RGBA")).convert("RGB")
    masks = [m for m in (drawn_mask(editor.get("layers") or [], init.size),
                         uploaded_mask.convert("L").resize(init.size) if uploaded_mask is not None else None)
             if m is not None]
    if not masks:
        raise gr.Error("Paint over the part to repaint with the brush, or upload a mask (white = repaint).")
    mask = masks[0] if len(masks) == 1 else ImageChops.lighter(*masks)
    return init, mask


def render(services: Services, quota: QueueQuota) -> InpaintTab:
    """Build the tab inside the current Blocks and wire its events."""
    with gr.Tab("Inpaint", id="inpaint", elem_id="inpaint-tab"), gr.Row():
        with gr.Column(scale=5):
            models, prompts, generate_btn, stop_btn = image_form.form_head(services, "inpaint")
            editor = gr.ImageEditor(label="Image: paint over what to repaint", type="pil", image_mode="RGBA",
                                    sources=["upload", "clipboard"], brush=BRUSH, layers=False,
                                    transforms=(), height=420, elem_id="inpaint-editor")
            with gr.Accordion("Upload a mask instead", open=False):
                uploaded_mask = gr.Image(label="Mask (white = repaint)", type="pil", image_mode="L",
                                         sources=["upload", "clipboard"], elem_id="inpaint-mask-upload")
            with gr.Row():
                mask_blur = gr.Slider(0, MAX_MASK_BLUR, value=DEFAULTS["mask_blur"], step=1, label="Mask blur")
                mask_invert = gr.Radio(image_form.MASK_MODES, value=0, label="Mask mode")
            with gr.Row():
                fill = gr.Radio(image_form.MASKED_CONTENT, value=1, label="Masked content")
                full_res = gr.Radio(image_form.INPAINT_AREAS, value=False, label="Inpaint area")
            with gr.Row():
                padding = gr.Slider(0, MAX_FULL_RES_PADDING, value=DEFAULTS["inpaint_full_res_padding"], step=1,
                                    label="Only masked padding, pixels")
                resize_mode = gr.Radio(image_form.RESIZE_CHOICES, value=0, label="Resize mode")
            denoising_strength = image_form.denoising_slider()
            with gr.Accordion("Settings", open=True):
                settings = image_form.settings_sliders(services)
            # What the API takes, and what Generate fills from the editor first.
            init_image = gr.Image(visible=False, type="filepath", format="png")
            mask = gr.Image(visible=False, type="filepath", format="png")
        with gr.Column(scale=6):
            column = image_form.job_column("inpaint")

    given = {**prompts, **settings, **models, "init_image": init_image, "denoising_strength": denoising_strength,
             "resize_mode": resize_mode, "mask": mask, "mask_blur": mask_blur, "inpainting_fill": fill,
             "inpaint_full_res": full_res, "inpaint_full_res_padding": padding,
             "inpainting_mask_invert": mask_invert}
    fields = {name: given[name] for name in PARAM_NAMES}
    # Gradio decodes the editor (its strokes reach the server as blobs only its own preprocess reads); the job
    # event then takes the two images as files, exactly as /inpaint does from a script.
    split = generate_btn.click(split_editor, inputs=[editor, uploaded_mask], outputs=[init_image, mask],
                               concurrency_limit=None, show_progress="hidden", **PRIVATE)
    event = image_form.job_event(services, quota, split.success, "inpaint", fields, column, "inpaint",
                                 "Repaint the masked part of an init image (white = repaint); streams the preview "
                                 "and progress, ends with the stored PNG files and their info.")
    stop_btn.click(None, cancels=[event], **PRIVATE)
    image_form.wire_reuse(column, fields)
    return InpaintTab(fields, editor)
