"""The img2img tab: an init image reworked by a prompt at a denoising strength; the `/img2img` API."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from services.admission import QueueQuota
from services.container import Services
from ui import controlnet_panel, image_form, refiner_panel

# The parameters of /img2img, in order: txt2img's, then the init image and how it is used, then the model choice.
PARAM_NAMES = (*image_form.TXT2IMG_NAMES, *image_form.IMG2IMG_NAMES, *image_form.MODEL_NAMES,
               *image_form.CONTROLNET_NAMES, *image_form.REFINER_NAMES)


@dataclass
class Img2ImgTab:
    """The components PNG Info fills ("Send to img2img")."""

    fields: dict[str, gr.components.Component]


def init_image_input(label: str, elem_id: str) -> gr.Image:
    """An image to upload or paste; its raw file reaches the validator, which decodes it with the upload limits."""
    return gr.Image(label=label, sources=["upload", "clipboard"], type="filepath", format="png", height=360,
                    elem_id=elem_id)


def render(services: Services, quota: QueueQuota) -> Img2ImgTab:
    """Build the tab inside the current Blocks and wire its events."""
    with gr.Tab("img2img", id="img2img", elem_id="img2img-tab"), gr.Row():
        with gr.Column(scale=5):
            models, prompts = image_form.form_head(services, "img2img")
            refiner = refiner_panel.render(services, "img2img")
            image_form.wire_relist(services, models, refiner["refiner_checkpoint"])
            init_image = init_image_input("Init image", "img2img-init-image")
            generate_btn, stop_btn = image_form.run_buttons("img2img")
            with gr.Row():
                resize_mode = gr.Radio(image_form.RESIZE_CHOICES, value=0, label="Resize mode")
                denoising_strength = image_form.denoising_slider()
            with gr.Accordion("Settings", open=True):
                settings = image_form.settings_sliders(services)
            panel = controlnet_panel.render(services, "img2img", settings["width"], settings["height"])
        with gr.Column(scale=6):
            column = image_form.job_column("img2img")

    given = {**prompts, **settings, **models, "init_image": init_image, "resize_mode": resize_mode,
             "denoising_strength": denoising_strength, "controlnet": panel.units_json, **refiner}
    fields = {name: given[name] for name in PARAM_NAMES}
    trigger = panel.packed(generate_btn.click)
    image_form.wire_job(services, quota, trigger, "img2img", fields, column, stop_btn,
                        "Rework an init image with a prompt (img2img); streams the preview and progress, ends with "
                        "the stored PNG files and their info.")
    return Img2ImgTab(fields)
