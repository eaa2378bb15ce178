"""The Image tab (txt2img): prompt, settings, hires fix, checkpoint and VAE, Generate/Stop, live preview, results;
the `/generate_image` API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import gradio as gr

from services.admission import QueueQuota
from services.chat import split_prompt_answer
from services.container import Services
from ui import controlnet_panel, image_form, refiner_panel
from ui.common import (
    PRIVATE,
    RAW_INPUTS,
    checked_by_validator,
    error_toast,
    hand_to_handler,
    html_text,
    job_context,
    type_errors,
    verdicts,
)
from ui.model_status import keep_current

# The parameters of /generate_image, in order: today's first, so that positional calls keep working, then hires
# fix and the model choice, all optional with AUTOMATIC1111's defaults.
PARAM_NAMES = (*image_form.TXT2IMG_NAMES, *image_form.HIRES_NAMES, *image_form.MODEL_NAMES,
               *image_form.CONTROLNET_NAMES, *image_form.REFINER_NAMES)


@dataclass
class Txt2ImgTab:
    """The components other tabs need: the settings inputs by name (for "reuse" and "send to") and the events."""

    fields: dict[str, gr.components.Component]
    model_status: gr.Markdown
    generate_event: Any

    def inputs(self) -> list[gr.components.Component]:
        """The settings components, in PARAM_NAMES order."""
        return [self.fields[name] for name in PARAM_NAMES]


def settings_values(services: Services, job: dict[str, Any]) -> list[Any]:
    """Values for the settings components from a job or info dict (seed: the one actually used; the checkpoint and
    VAE as the dropdowns' choices)."""
    return image_form.reuse_values(services, job, list(PARAM_NAMES))


def render(services: Services, quota: QueueQuota) -> Txt2ImgTab:
    """Build the tab inside the current Blocks and wire its events."""
    with gr.Tab("Image", id="image", elem_id="image-tab"):
        model_status = gr.Markdown(html_text(services.image_slot.status().message()), elem_id="image-model-status")
        with gr.Row():
            with gr.Column(scale=5):
                models = image_form.model_pickers(services, "image")
                refiner = refiner_panel.render(services, "image")
                image_form.wire_relist(services, models, refiner["refiner_checkpoint"])
                with gr.Row():
                    idea_box = gr.Textbox(label="Idea", placeholder="a fox in the snow", scale=4,
                                          elem_id="image-idea")
                    assist_btn = gr.Button("Write prompt", scale=1, elem_id="image-assist")
                prompts = image_form.prompt_boxes("image")
                generate_btn, stop_btn = image_form.run_buttons("image")
                with gr.Accordion("Settings", open=True):
                    settings = image_form.settings_sliders(services)
                hires = image_form.hires_fields(services)
                panel = controlnet_panel.render(services, "image", settings["width"], settings["height"])
            with gr.Column(scale=6):
                column = image_form.job_column("image")
        timer = gr.Timer(1.0, active=True)

    given = {**prompts, **settings, **hires, **models, "controlnet": panel.units_json, **refiner}
    fields = {name: given[name] for name in PARAM_NAMES}
    trigger = panel.packed(generate_btn.click)
    event = image_form.job_event(services, quota, trigger, "txt2img", fields, column, "generate_image",
                                 "Generate images from a prompt (txt2img, optionally with hires fix); streams the "
                                 "preview and progress, ends with the stored PNG files and their info.")

    assist_event = wire_prompt_assist(services, quota, idea_box, assist_btn, prompts)
    stop_btn.click(None, cancels=[event, assist_event], **PRIVATE)
    image_form.wire_reuse(services, column, fields)

    # The line is read again after each job, which may have loaded the model (or failed to).
    keep_current(model_status, timer, "image", event)
    return Txt2ImgTab(fields, model_status, event)


def wire_prompt_assist(services: Services, quota: QueueQuota, idea_box: gr.Textbox, assist_btn: gr.Button,
                       prompts: dict[str, gr.Textbox]) -> Any:
    """"Write prompt" (and `/assist_prompt`): the text model turns the idea into the prompt and negative prompt."""

    def validate_idea(idea: str, request: gr.Request) -> Any:
        """Runs before prompt assist is queued."""
        checked, errors = None, type_errors({"idea": idea_box}, {"idea": idea})
        if not errors:
            checked, errors = services.chat.check_idea(idea)
        if problem := quota.problem(request):
            errors["idea"] = problem
        if not errors:
            hand_to_handler(request, checked)
        return verdicts(["idea"], errors)

    async def assist_prompt(idea: str, request: gr.Request) -> AsyncIterator[tuple[str, str]]:
        """Write a Stable Diffusion prompt and negative prompt for `idea` with the text model (its answer only).

        Args:
            idea: the picture you have in mind, in a few words
        """
        with job_context(request):  # the reply's row is the requesting user's
            handle = services.chat.start_prompt_assist(checked_by_validator(request))
        async for snap in handle.watch():
            if snap.status == "failed":
                raise error_toast(snap.error or snap.message)
            if snap.answer or snap.status in ("done", "cancelled"):
                yield split_prompt_answer(snap.answer)

    return assist_btn.click(assist_prompt, inputs=[idea_box], outputs=[prompts["prompt"], prompts["negative_prompt"]],
                            api_name="assist_prompt", validator=validate_idea, **RAW_INPUTS,
                            concurrency_limit=services.chat.concurrency, concurrency_id="text",
                            show_progress="minimal")
