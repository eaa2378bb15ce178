"""The PNG Info tab: drop a PNG (from Atelier or AUTOMATIC1111) to see its settings, and send them to a tab."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from contracts import InvalidRequest
from services import pnginfo
from services.container import Services
from ui.common import PRIVATE, RAW_INPUTS, error_toast, is_file
from ui.image_form import IMAGE_NAMES, reuse_values
from ui.img2img_tab import Img2ImgTab
from ui.inpaint_tab import InpaintTab
from ui.txt2img_tab import Txt2ImgTab


def read_info(image: dict[str, Any] | None) -> dict[str, Any]:
    """The settings stored in an uploaded PNG (raw Gradio file value), in AUTOMATIC1111's API names."""
    if image is None:
        raise error_toast("image: upload a PNG to read its settings.")
    try:
        return pnginfo.read(Path(image["path"]))
    except InvalidRequest as err:
        raise error_toast(str(err)) from None


def show_info(image: dict[str, Any] | None) -> tuple[dict[str, Any] | None, str]:
    """The info dict and its raw `parameters` text, or nothing once the image is cleared."""
    if image is None:
        return None, ""
    info = read_info(image)
    return info, info.get("parameters", "")


def path_of(image: dict[str, Any] | None) -> str | None:
    """The file of a raw Gradio image value (None when there is none)."""
    return image["path"] if is_file(image) else None


def settings_of(info: dict[str, Any] | None) -> dict[str, Any]:
    """The info read from a PNG, or a message when there is none yet."""
    if not info:
        raise error_toast("Drop a PNG with generation settings first.")
    return info


def render(services: Services, tabs: gr.Tabs, txt2img: Txt2ImgTab, img2img: Img2ImgTab, inpaint: InpaintTab) -> None:
    """Build the tab inside the current Blocks and wire its events, the "Send to" buttons included."""
    with gr.Tab("PNG Info", id="pnginfo", elem_id="pnginfo-tab"), gr.Row():
        with gr.Column():
            png = gr.Image(label="PNG", type="filepath", sources=["upload"], height=420,
                           elem_id="pnginfo-image")
        with gr.Column():
            parameters = gr.Textbox(label="parameters", lines=6, interactive=False,
                                    elem_id="pnginfo-parameters")
            info = gr.JSON(label="Settings (AUTOMATIC1111's API names)", elem_id="pnginfo-info")
            with gr.Row():
                to_txt2img = gr.Button("Send to txt2img", elem_id="pnginfo-to-txt2img")
                to_img2img = gr.Button("Send to img2img", elem_id="pnginfo-to-img2img")
                to_inpaint = gr.Button("Send to inpaint", elem_id="pnginfo-to-inpaint")

    png.change(show_info, inputs=[png], outputs=[info, parameters], concurrency_limit=None, **RAW_INPUTS,
               **PRIVATE)
    txt2img_names = list(txt2img.fields)
    img2img_names = [n for n in img2img.fields if n not in IMAGE_NAMES]
    inpaint_names = [n for n in inpaint.fields if n not in IMAGE_NAMES]

    def send_to_txt2img(info: dict[str, Any] | None) -> list[Any]:
        return [*reuse_values(services, settings_of(info), txt2img_names), gr.Tabs(selected="image")]

    # The picture goes on by path, undecoded (RAW_INPUTS: Gradio's preprocess would decode it in full).
    def send_to_img2img(info: dict[str, Any] | None, png: dict[str, Any] | None) -> list[Any]:
        # As AUTOMATIC1111 does, the picture itself becomes the init image.
        return [*reuse_values(services, settings_of(info), img2img_names), path_of(png), gr.Tabs(selected="img2img")]

    def send_to_inpaint(info: dict[str, Any] | None, png: dict[str, Any] | None) -> list[Any]:
        path = path_of(png)
        editor = {"background": path, "layers": [], "composite": path}
        return [*reuse_values(services, settings_of(info), inpaint_names), editor, gr.Tabs(selected="inpaint")]

    to_txt2img.click(send_to_txt2img, inputs=[info], outputs=[*txt2img.inputs(), tabs], **PRIVATE)
    to_img2img.click(send_to_img2img, inputs=[info, png],
                     outputs=[*(img2img.fields[n] for n in img2img_names), img2img.fields["init_image"], tabs],
                     **RAW_INPUTS, **PRIVATE)
    to_inpaint.click(send_to_inpaint, inputs=[info, png],
                     outputs=[*(inpaint.fields[n] for n in inpaint_names), inpaint.editor, tabs], **RAW_INPUTS,
                     **PRIVATE)
