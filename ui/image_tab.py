"""The Image tab: prompt, settings, Generate/Stop, live preview, results; the `/generate_image` API."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import gradio as gr

from services.chat import split_prompt_answer
from services.container import Services
from services.limits import MAX_SEED, SAMPLERS, InvalidRequest
from ui.common import PRIVATE, RAW_INPUTS, QueueQuota, type_errors, user_of, verdicts

# How often the handler looks at its job: the result reaches the client up to this much after the job ends. A wake
# costs microseconds; messages, the real cost, are paced by ATELIER_STREAM_INTERVAL_S.
WATCH_POLL_S = 0.005
PARAM_NAMES = ("prompt", "negative_prompt", "width", "height", "steps", "cfg_scale", "seed", "sampler",
               "batch_count")


@dataclass
class ImageTab:
    """The components other tabs need: the settings inputs (for "reuse") and the generate event."""

    prompt: gr.Textbox
    negative_prompt: gr.Textbox
    width: gr.Slider
    height: gr.Slider
    steps: gr.Slider
    cfg_scale: gr.Slider
    seed: gr.Number
    sampler: gr.Dropdown
    batch_count: gr.Slider
    model_status: gr.Markdown
    generate_event: Any

    def inputs(self) -> list[gr.components.Component]:
        """The settings components, in PARAM_NAMES order."""
        return [getattr(self, name) for name in PARAM_NAMES]


def settings_values(job: dict[str, Any]) -> list[Any]:
    """Values for the settings components from a job or info dict (seed: the one actually used)."""
    seed = job.get("seed_used", job.get("seed", -1))
    values = {**job, "seed": -1 if seed is None else seed}
    return [values[name] for name in PARAM_NAMES]


def render(services: Services, quota: QueueQuota) -> ImageTab:
    """Build the tab inside the current Blocks and wire its events."""
    defaults = services.images.defaults
    limits = services.images.limits
    with gr.Tab("Image", id="image"):
        model_status = gr.Markdown(services.image_slot.status().message(), elem_id="image-model-status")
        with gr.Row():
            with gr.Column(scale=5):
                with gr.Row():
                    idea_box = gr.Textbox(label="Idea", placeholder="a fox in the snow", scale=4,
                                          elem_id="image-idea")
                    assist_btn = gr.Button("✨ Write prompt", scale=1, elem_id="image-assist")
                prompt = gr.Textbox(label="Prompt", lines=3, placeholder="a watercolor fox in a misty forest",
                                    elem_id="image-prompt")
                negative_prompt = gr.Textbox(label="Negative prompt", lines=2, placeholder="blurry, low quality")
                with gr.Row():
                    generate_btn = gr.Button("Generate", variant="primary", elem_id="image-generate")
                    stop_btn = gr.Button("Stop", variant="stop", elem_id="image-stop")
                with gr.Accordion("Settings", open=True):
                    with gr.Row():
                        # The ranges bound the widgets; what scripts send, the validators check (RAW_INPUTS).
                        width = gr.Slider(limits.min_size, limits.max_size, value=defaults.get("width", 512),
                                          step=8, label="Width")
                        height = gr.Slider(limits.min_size, limits.max_size, value=defaults.get("height", 512),
                                           step=8, label="Height")
                    with gr.Row():
                        steps = gr.Slider(1, limits.max_steps, value=defaults.get("steps", 20), step=1,
                                          label="Steps")
                        cfg_scale = gr.Slider(0, limits.max_cfg_scale, value=defaults.get("cfg_scale", 7.0),
                                              step=0.5, label="CFG scale")
                    with gr.Row():
                        sampler = gr.Dropdown(list(SAMPLERS), value=defaults.get("sampler", "Euler a"),
                                              label="Sampler", allow_custom_value=True)
                        seed = gr.Number(-1, precision=0, minimum=-1, maximum=MAX_SEED,
                                         label="Seed (-1 = random)")
                        batch_count = gr.Slider(1, limits.max_batch_count, value=1, step=1, label="Batch count")
            with gr.Column(scale=6):
                preview = gr.Image(label="Live preview", type="pil", format="jpeg", interactive=False,
                                   elem_id="image-preview", height=320)
                progress_md = gr.Markdown(elem_id="image-progress")
                gallery = gr.Gallery(label="Result", columns=2, height="auto", elem_id="image-result",
                                     format="png")
                info = gr.JSON(label="Info", elem_id="image-info")
                with gr.Row():
                    reuse_btn = gr.Button("Reuse settings", size="sm")
                    reuse_seed_btn = gr.Button("Reuse seed", size="sm")
        timer = gr.Timer(1.0, active=True)

    inputs = [prompt, negative_prompt, width, height, steps, cfg_scale, seed, sampler, batch_count]
    fields = dict(zip(PARAM_NAMES, inputs, strict=True))

    def validate_image_request(prompt: str, negative_prompt: str, width: float, height: float, steps: float,
                               cfg_scale: float, seed: float, sampler: str, batch_count: float,
                               request: gr.Request) -> list[Any]:
        """Runs before the job is queued: one gr.validate per input, naming the allowed range."""
        values = _coerce(dict(zip(PARAM_NAMES, (prompt, negative_prompt, width, height, steps, cfg_scale, seed,
                                                sampler, batch_count), strict=True)))
        wrong = type_errors(fields, values)
        # Values of the right type go to the service's checks, which say what each field allows.
        errors = {**services.images.field_errors(**{k: v for k, v in values.items() if k not in wrong}), **wrong}
        if problem := quota.problem(request):
            errors["prompt"] = problem
        return verdicts(PARAM_NAMES, errors)

    async def generate_image(prompt: str, negative_prompt: str, width: float, height: float, steps: float,
                             cfg_scale: float, seed: float, sampler: str, batch_count: float,
                             request: gr.Request, progress: gr.Progress = gr.Progress()
                             ) -> AsyncIterator[tuple[Any, str, Any, dict[str, Any]]]:
        """Generate images; stream the preview and progress, end with the stored PNG files and info."""
        values = dict(zip(PARAM_NAMES, (prompt, negative_prompt, width, height, steps, cfg_scale, seed, sampler,
                                        batch_count), strict=True))
        try:
            req = services.images.validate(**_coerce(values))
        except InvalidRequest as err:
            raise gr.Error(str(err)) from None
        handle = services.images.start(req, user=user_of(request))
        shown = StreamGate(services.settings.stream_interval_s)
        async for snap in handle.watch(poll_s=WATCH_POLL_S):
            if snap.status == "failed":
                raise gr.Error(snap.error or snap.message)
            if not shown.due(snap):
                continue  # coalesced: the next update carries the latest preview and step
            if snap.total and not snap.finished:
                progress((snap.step, snap.total), desc=snap.message)
            gallery_value = [(str(p), f"seed {s}") for p, s in zip(snap.files, snap.info.get("seeds", []),
                                                                   strict=False)]
            yield (shown.changed("preview", snap.preview), snap.message,
                   gallery_value if snap.finished else gr.skip(), shown.changed("info", snap.info))

    event = generate_btn.click(
        generate_image, inputs=inputs, outputs=[preview, progress_md, gallery, info],
        api_name="generate_image", validator=validate_image_request, **RAW_INPUTS,
        # Several jobs at once, so that they can wait together in the batcher (services/batcher.py), which runs
        # one pipeline call at a time; Gradio's batch=True cannot stream previews (see the README).
        concurrency_limit=services.images.concurrency,
        # The queue position and ETA show over the result, while the preview above keeps streaming.
        concurrency_id="image", show_progress="full", show_progress_on=[gallery],
    )

    def validate_idea(idea: str, request: gr.Request) -> Any:
        """Runs before prompt assist is queued."""
        errors = type_errors({"idea": idea_box}, {"idea": idea}) or services.chat.idea_errors(idea)
        if problem := quota.problem(request):
            errors["idea"] = problem
        return verdicts(["idea"], errors)

    async def assist_prompt(idea: str) -> AsyncIterator[tuple[str, str]]:
        """Write a Stable Diffusion prompt and negative prompt for `idea` with the text model (its answer only)."""
        try:
            handle = services.chat.start_prompt_assist(idea)
        except InvalidRequest as err:
            raise gr.Error(str(err)) from None
        async for snap in handle.watch():
            if snap.status == "failed":
                raise gr.Error(snap.error or snap.message)
            if snap.answer or snap.status in ("done", "cancelled"):
                yield split_prompt_answer(snap.answer)

    assist_event = assist_btn.click(assist_prompt, inputs=[idea_box], outputs=[prompt, negative_prompt],
                                    api_name="assist_prompt", validator=validate_idea, **RAW_INPUTS,
                                    concurrency_limit=services.chat.concurrency,
                                    concurrency_id="text", show_progress="minimal")
    stop_btn.click(None, cancels=[event, assist_event], **PRIVATE)

    def reuse_settings(info_value: dict[str, Any] | None) -> list[Any]:
        if not info_value or "prompt" not in info_value:
            raise gr.Error("Nothing to reuse yet: generate an image first.")
        return settings_values(info_value)

    def reuse_seed(info_value: dict[str, Any] | None) -> int:
        if not info_value or info_value.get("seed") is None:
            raise gr.Error("No seed to reuse yet: generate an image first.")
        return int(info_value["seed"])

    reuse_btn.click(reuse_settings, inputs=[info], outputs=inputs, **PRIVATE)
    reuse_seed_btn.click(reuse_seed, inputs=[info], outputs=[seed], **PRIVATE)

    def refresh_status() -> tuple[str, gr.Timer]:
        status = services.image_slot.status()
        # Poll only while there is something to watch.
        return status.message(), gr.Timer(active=status.state.value in ("loading", "not loaded"))

    timer.tick(refresh_status, outputs=[model_status, timer], concurrency_limit=None, show_progress="hidden",
               **PRIVATE)
    # A job started from another client (the API) may load the model: look again after each job.
    event.then(refresh_status, outputs=[model_status, timer], **PRIVATE)
    return ImageTab(prompt, negative_prompt, width, height, steps, cfg_scale, seed, sampler, batch_count,
                    model_status, event)


class StreamGate:
    """Which of a job's snapshots become messages: every change of status and the final one at once, step
    progress at most once per `interval_s` (a message costs a Gradio postprocess and an SSE event on the CPU the
    pipeline needs); and of the outputs, only those that changed since the last message."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.status = ""
        self.last = -math.inf
        self.sent: dict[str, Any] = {"preview": None}  # a new job keeps the last preview until it has one

    def due(self, snap: Any) -> bool:
        """True when `snap` should be sent now."""
        now = time.monotonic()
        if snap.finished or snap.status != self.status or now - self.last >= self.interval_s:
            self.status, self.last = snap.status, now
            return True
        return False

    def changed(self, name: str, value: Any) -> Any:
        """`value` if it is not the object sent last time under `name`, else gr.skip() (nothing to re-encode)."""
        if name in self.sent and self.sent[name] is value:
            return gr.skip()
        self.sent[name] = value
        return value


def _coerce(values: dict[str, Any]) -> dict[str, Any]:
    """Sliders and numbers arrive as floats; whole-number fields become ints when they are whole."""
    out = dict(values)
    for name in ("width", "height", "steps", "seed", "batch_count"):
        value = out.get(name)
        if isinstance(value, float) and value.is_integer():
            out[name] = int(value)
    for name in ("prompt", "negative_prompt"):
        if out.get(name) is None:
            out[name] = ""
    return out
