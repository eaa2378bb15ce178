"""The inpaint tab: draw a mask over an image (or upload one) and repaint it; the `/inpaint` API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr
from PIL import Image, ImageChops

from contracts import MAX_FULL_RES_PADDING, MAX_MASK_BLUR, InvalidRequest
from services.admission import QueueQuota
from services.container import Services
from services.uploads import Uploads, to_mask, to_rgb
from ui import controlnet_panel, image_form
from ui.common import DECODE_CONCURRENCY, PRIVATE, RAW_INPUTS, error_toast, is_file, user_of
from ui.image_form import A1111_DEFAULTS as DEFAULTS

# The parameters of /inpaint, in order: img2img's (before the model choice), the mask and its options, the model.
PARAM_NAMES = (*image_form.TXT2IMG_NAMES, *image_form.IMG2IMG_NAMES, *image_form.INPAINT_NAMES,
               *image_form.MODEL_NAMES, *image_form.CONTROLNET_NAMES)
NOT_RECEIVED = ("The picture in the editor did not reach the server (too large, over the upload rate limit, or sent "
                "too long ago). Drop it on the editor again.")
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
        raise error_toast("Upload the image to inpaint first (drop it on the editor).")
    try:
        # Read as /inpaint reads its files: transparent parts of the picture become white; the uploaded mask (in
        # its own mode) is scaled from 16 bits, its transparency the painted part.
        init = to_rgb(background)
        uploaded = to_mask(uploaded_mask).resize(init.size) if uploaded_mask is not None else None
    except InvalidRequest as err:
        raise error_toast(str(err)) from None
    masks = [m for m in (drawn_mask(editor.get("layers") or [], init.size), uploaded) if m is not None]
    if not masks:
        raise error_toast("Paint over the part to repaint with the brush, or upload a mask (white = repaint).")
    mask = masks[0] if len(masks) == 1 else ImageChops.lighter(*masks)
    return init, mask


def decode_editor(uploads: Uploads, owner: str, value: dict[str, Any] | None, uploaded_mask: dict[str, Any] | None
                  ) -> tuple[dict[str, Any] | None, Image.Image | None]:
    """The editor's raw value and the raw uploaded mask as split_editor takes them, each image checked for its type,
    bytes and pixels (from its header) before it is decoded: the editor's pieces come from the pending uploads under
    this owner and the value's id (services/editor_blobs.py), or from files the value names."""
    try:
        editor = _editor_images(uploads, owner, value)
        mask = uploads.read_image(uploaded_mask["path"], "mask", mask=True) if is_file(uploaded_mask) else None
    except InvalidRequest as err:
        raise error_toast(str(err)) from None
    return editor, mask


def _editor_images(uploads: Uploads, owner: str, value: dict[str, Any] | None) -> dict[str, Any] | None:
    if not value:
        return None
    pieces: list[bytes | str]
    if blob_id := value.get("id"):
        pending = uploads.blobs.take(owner, str(blob_id))
        if pending is None:
            raise error_toast(NOT_RECEIVED)
        if pending.refused:
            raise error_toast(pending.refused)
        background: bytes | str | None = pending.background
        pieces = [pending.layers[index] for index in sorted(pending.layers)]
    else:
        background = value["background"]["path"] if is_file(value.get("background")) else None
        pieces = [layer["path"] for layer in value.get("layers") or [] if is_file(layer)]
    return {"background": None if background is None else uploads.read_as(background, "background"),
            "layers": [uploads.read_as(piece, f"layer {index}") for index, piece in enumerate(pieces)]}


def mask_upload() -> gr.Image:
    """The mask a user uploads instead of painting, handed over in its own mode (image_mode=None): Gradio's
    convert("L") would clip a 16-bit mask to white; split_editor reads it as /inpaint reads a mask file."""
    return gr.Image(label="Mask (white = repaint)", type="pil", image_mode=None, sources=["upload", "clipboard"],
                    elem_id="inpaint-mask-upload")


def render(services: Services, quota: QueueQuota) -> InpaintTab:
    """Build the tab inside the current Blocks and wire its events."""
    with gr.Tab("Inpaint", id="inpaint", elem_id="inpaint-tab"), gr.Row():
        with gr.Column(scale=5):
            models, prompts = image_form.form_head(services, "inpaint")
            editor = gr.ImageEditor(label="Image: paint over what to repaint", type="pil", image_mode="RGBA",
                                    sources=["upload", "clipboard"], brush=BRUSH, layers=False,
                                    transforms=(), height=420, elem_id="inpaint-editor")
            with gr.Accordion("Upload a mask instead", open=False):
                uploaded_mask = mask_upload()
            generate_btn, stop_btn = image_form.run_buttons("inpaint")
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
            panel = controlnet_panel.render(services, "inpaint", settings["width"], settings["height"])
            # What the API takes, and what Generate fills from the editor first.
            init_image = gr.Image(visible=False, type="filepath", format="png")
            mask = gr.Image(visible=False, type="filepath", format="png")
        with gr.Column(scale=6):
            column = image_form.job_column("inpaint")

    given = {**prompts, **settings, **models, "init_image": init_image, "denoising_strength": denoising_strength,
             "resize_mode": resize_mode, "mask": mask, "mask_blur": mask_blur, "inpainting_fill": fill,
             "inpaint_full_res": full_res, "inpaint_full_res_padding": padding,
             "inpainting_mask_invert": mask_invert, "controlnet": panel.units_json}
    fields = {name: given[name] for name in PARAM_NAMES}
    # The editor's pieces reach the server through component_server (api/internal_routes.py); this step decodes them
    # after the upload checks, a few at a time, and the job event takes the two images as files, exactly as
    # /inpaint does from a script.
    def split(value: dict[str, Any] | None, uploaded: dict[str, Any] | None, request: gr.Request
              ) -> tuple[Image.Image, Image.Image]:
        return split_editor(*decode_editor(services.uploads, user_of(request), value, uploaded))

    split_event = generate_btn.click(split, inputs=[editor, uploaded_mask], outputs=[init_image, mask],
                                     concurrency_limit=DECODE_CONCURRENCY, concurrency_id="decode",
                                     show_progress="hidden", **RAW_INPUTS, **PRIVATE)
    trigger = panel.packed(split_event.success)
    image_form.wire_job(services, quota, trigger, "inpaint", fields, column, stop_btn,
                        "Repaint the masked part of an init image (white = repaint); streams the preview and "
                        "progress, ends with the stored PNG files and their info.")
    return InpaintTab(fields, editor)
