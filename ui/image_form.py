"""What the three image tabs (txt2img, img2img, inpaint) share: their settings widgets with AUTOMATIC1111's names
and defaults, the result column, and the job event (validator, streamed run) behind `/generate_image`, `/img2img`
and `/inpaint`."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from contracts import (
    DEFAULT_REFINER_SWITCH_AT,
    IMAGE_UPSCALERS,
    LATENT_UPSCALERS,
    MAX_HR_SCALE,
    MAX_SEED,
    SAMPLERS,
    ImageRequest,
    choices,
    excerpt,
)
from services.admission import PlaceTeller, QueueQuota
from services.container import Services
from ui import refiner_panel
from ui.common import (
    PRIVATE,
    RAW_INPUTS,
    checked_by_validator,
    error_toast,
    hand_to_handler,
    info_toast,
    job_context,
    type_errors,
    user_of,
    verdicts,
)

TXT2IMG_NAMES = ("prompt", "negative_prompt", "width", "height", "steps", "cfg_scale", "seed", "sampler",
                 "batch_count")
HIRES_NAMES = ("enable_hr", "hr_scale", "hr_upscaler", "hr_second_pass_steps", "denoising_strength")
MODEL_NAMES = ("model", "vae")
IMG2IMG_NAMES = ("init_image", "denoising_strength", "resize_mode")
INPAINT_NAMES = ("mask", "mask_blur", "inpainting_fill", "inpaint_full_res", "inpaint_full_res_padding",
                 "inpainting_mask_invert")
IMAGE_NAMES = ("init_image", "mask")
CONTROLNET_NAMES = ("controlnet",)  # the units (ui/controlnet_panel.py)
REFINER_NAMES = ("refiner_checkpoint", "refiner_switch_at")  # A1111's SDXL refiner, last (ui/refiner_panel.py)
# AUTOMATIC1111's API defaults for what a request may leave out (see ISSUE13's contract and pipelines/image_base).
A1111_DEFAULTS: dict[str, Any] = {
    "enable_hr": False, "hr_scale": 2.0, "hr_upscaler": "Latent", "hr_second_pass_steps": 0,
    "denoising_strength": 0.75, "resize_mode": 0, "mask_blur": 4, "inpainting_fill": 1, "inpaint_full_res": False,
    "inpaint_full_res_padding": 32, "inpainting_mask_invert": 0, "model": "", "vae": "", "refiner_checkpoint": "",
    "refiner_switch_at": DEFAULT_REFINER_SWITCH_AT,
}
WHOLE_NAMES = ("width", "height", "steps", "seed", "batch_count", "hr_second_pass_steps", "resize_mode", "mask_blur",
               "inpainting_fill", "inpaint_full_res_padding", "inpainting_mask_invert")
# The numbered choices as (label, value) for Gradio's radios, with the labels every client shows (contracts.choices).
RESIZE_CHOICES, MASKED_CONTENT, MASK_MODES = ([(c["label"], c["value"]) for c in choices()[name]]
                                             for name in ("resize_modes", "inpainting_fills", "mask_modes"))
INPAINT_AREAS = [("Whole picture", False), ("Only masked", True)]
BUILTIN_UPSCALERS = [*LATENT_UPSCALERS, *IMAGE_UPSCALERS]
# What each parameter of /generate_image, /img2img and /inpaint means: the Args of their docstrings, which the API page
# and the MCP tools made from these endpoints show.
PARAM_DOCS: dict[str, str] = {
    "prompt": "what the image shows, in AUTOMATIC1111's prompt syntax ((word:1.2) weights, <lora:name:weight>)",
    "negative_prompt": "what the image should not show (empty: nothing)",
    "width": "width in pixels, a multiple of 8", "height": "height in pixels, a multiple of 8",
    "steps": "sampling steps: more is slower and finer", "cfg_scale": "how closely to follow the prompt (about 7)",
    "seed": "-1 for a random seed; the same seed and settings make the same image",
    "sampler": "the sampler, by AUTOMATIC1111's name (Euler a, DPM++ 2M Karras, ...)",
    "batch_count": "how many images (image i uses seed + i)",
    "enable_hr": "hires fix: make the image at the size given, upscale it, then refine it",
    "hr_scale": "hires fix: how much to upscale", "hr_upscaler": "hires fix: the upscaler (Latent, Lanczos, ...)",
    "hr_second_pass_steps": "hires fix: steps of the refining pass (0: as many as steps)",
    "denoising_strength": "how much to change: 0 keeps the picture, 1 replaces it",
    "model": "the checkpoint by name (the models endpoint lists them; empty: the server's default)",
    "vae": "the VAE by name (empty: the checkpoint's own)",
    "controlnet": ("ControlNet units: a list of objects in sd-webui-controlnet's names (image as base64, module, model "
                   "as /models lists it, weight, guidance_start, guidance_end, control_mode, resize_mode, …); "
                   "empty: none"),
    "refiner_checkpoint": "an SDXL checkpoint that takes over at refiner_switch_at, as A1111's refiner (empty: none)",
    "refiner_switch_at": "the fraction of the steps after which the refiner takes over (0 to 1, A1111's 0.8)",
    "init_image": "the picture to start from (an uploaded image file)",
    "resize_mode": "how the picture is brought to the size: 0 just resize, 1 crop and resize, 2 resize and fill",
    "mask": "where to repaint: white is repainted, black kept (an uploaded image file)",
    "mask_blur": "pixels of blur on the mask's edge", "inpainting_fill": "what the repainted area starts from: "
    "0 fill, 1 original, 2 latent noise, 3 latent nothing",
    "inpaint_full_res": "true: repaint only the masked area at full resolution and paste it back",
    "inpaint_full_res_padding": "pixels around the masked area kept as context when inpaint_full_res",
    "inpainting_mask_invert": "0 repaint the white part of the mask, 1 the black part",
}
# What AUTOMATIC1111's PNG Info (and its API) calls a field that Atelier names otherwise.
ALIASES = {"sampler": "sampler_name"}


@dataclass
class JobColumn:
    """The right-hand column of an image tab: live preview, progress, results, info, reuse buttons."""

    preview: gr.Image
    progress: gr.Markdown
    gallery: gr.Gallery
    info: gr.JSON
    reuse: gr.Button
    reuse_seed: gr.Button

    def outputs(self) -> list[gr.components.Component]:
        """What a job event streams into, in the order stream_job yields."""
        return [self.preview, self.progress, self.gallery, self.info]


def prompt_boxes(prefix: str) -> dict[str, gr.Textbox]:
    """The prompt and negative prompt boxes."""
    return {
        "prompt": gr.Textbox(label="Prompt", lines=3, placeholder="a watercolor fox in a misty forest",
                             elem_id=f"{prefix}-prompt"),
        "negative_prompt": gr.Textbox(label="Negative prompt", lines=2, placeholder="blurry, low quality",
                                      elem_id=f"{prefix}-negative-prompt"),
    }


def run_buttons(prefix: str) -> tuple[gr.Button, gr.Button]:
    """Generate and Stop."""
    with gr.Row():
        return (gr.Button("Generate", variant="primary", elem_id=f"{prefix}-generate"),
                gr.Button("Stop", variant="stop", elem_id=f"{prefix}-stop"))


def form_head(services: Services, prefix: str) -> tuple[dict[str, gr.components.Component], dict[str, gr.Textbox]]:
    """The top of an image-to-image form: checkpoint and VAE, prompts (the picture and then run_buttons follow: the
    image a job starts from comes before the buttons that start it)."""
    return model_pickers(services, prefix), prompt_boxes(prefix)


def settings_sliders(services: Services) -> dict[str, gr.components.Component]:
    """Size, steps, CFG, sampler, seed and batch count, bounded by the server's limits."""
    defaults = services.images.defaults
    limits = services.images.limits
    # The ranges bound the widgets; what scripts send, the validators check (RAW_INPUTS).
    with gr.Row():
        width = gr.Slider(limits.min_size, limits.max_size, value=defaults.get("width", 512), step=8, label="Width")
        height = gr.Slider(limits.min_size, limits.max_size, value=defaults.get("height", 512), step=8,
                           label="Height")
    with gr.Row():
        steps = gr.Slider(1, limits.max_steps, value=defaults.get("steps", 20), step=1, label="Steps")
        cfg_scale = gr.Slider(0, limits.max_cfg_scale, value=defaults.get("cfg_scale", 7.0), step=0.5,
                              label="CFG scale")
    with gr.Row():
        sampler = gr.Dropdown(list(SAMPLERS), value=defaults.get("sampler", "Euler a"), label="Sampler",
                              allow_custom_value=True)
        seed = gr.Number(-1, precision=0, minimum=-1, maximum=MAX_SEED, label="Seed (-1 = random)")
        batch_count = gr.Slider(1, limits.max_batch_count, value=1, step=1, label="Batch count")
    return {"width": width, "height": height, "steps": steps, "cfg_scale": cfg_scale, "seed": seed,
            "sampler": sampler, "batch_count": batch_count}


def denoising_slider(label: str = "Denoising strength") -> gr.Slider:
    """A1111's denoising strength: how much of the image the pass may change."""
    return gr.Slider(0, 1, value=A1111_DEFAULTS["denoising_strength"], step=0.01, label=label)


def model_choices(services: Services, checkpoints: list[str] | None = None
                  ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(checkpoints, VAEs) as dropdown choices (the checkpoint folder listed unless `checkpoints` is given); the empty
    name means the configured default."""
    catalog = services.catalog
    models = [("Default", ""), *((name, name) for name in (catalog.models() if checkpoints is None else checkpoints))]
    vaes = [("Automatic (the checkpoint's own)", ""), *((name, name) for name in catalog.vaes())]
    return models, vaes


def model_pickers(services: Services, prefix: str) -> dict[str, gr.components.Component]:
    """Checkpoint and VAE dropdowns with a "Refresh list" button ("refresh"; wire_relist wires it once the form's
    other lists of checkpoints exist)."""
    models, vaes = model_choices(services)
    with gr.Row():
        model = gr.Dropdown(models, value="", label="Checkpoint", elem_id=f"{prefix}-model", scale=4)
        vae = gr.Dropdown(vaes, value="", label="VAE", elem_id=f"{prefix}-vae", scale=3)
        # Words, not an emoji: a machine without an emoji font drew "🔄" as an empty box, with no name to read out.
        refresh = gr.Button("Refresh list", size="sm", scale=0, min_width=110, elem_id=f"{prefix}-refresh-models")
    return {"model": model, "vae": vae, "refresh": refresh}


def wire_relist(services: Services, pickers: dict[str, gr.components.Component], refiner: gr.Dropdown) -> None:
    """"Refresh list" lists the folders again into the checkpoint, VAE and refiner dropdowns, in one event (one
    listing of the folder, one round trip)."""
    def relist() -> tuple[gr.Dropdown, gr.Dropdown, gr.Dropdown]:
        checkpoints = services.catalog.models()
        models, vaes = model_choices(services, checkpoints)
        return (gr.Dropdown(choices=models), gr.Dropdown(choices=vaes),
                gr.Dropdown(choices=refiner_panel.refiner_choices(checkpoints)))

    pickers["refresh"].click(relist, outputs=[pickers["model"], pickers["vae"], refiner], concurrency_limit=None,
                             **PRIVATE)


def hires_fields(services: Services) -> dict[str, gr.components.Component]:
    """The "Hires. fix" accordion: base size, upscale, then an img2img pass, in one job."""
    with gr.Accordion("Hires. fix", open=False):
        enable_hr = gr.Checkbox(False, label="Hires. fix", elem_id="image-enable-hr")
        with gr.Row():
            hr_upscaler = gr.Dropdown([*BUILTIN_UPSCALERS, *services.catalog.upscalers()], value="Latent",
                                      label="Upscaler")
            hr_second_pass_steps = gr.Slider(0, services.images.limits.max_steps, value=0, step=1,
                                             label="Hires steps (0 = same as steps)")
        with gr.Row():
            denoising_strength = denoising_slider()
            hr_scale = gr.Slider(1, MAX_HR_SCALE, value=A1111_DEFAULTS["hr_scale"], step=0.05, label="Upscale by")
    return {"enable_hr": enable_hr, "hr_scale": hr_scale, "hr_upscaler": hr_upscaler,
            "hr_second_pass_steps": hr_second_pass_steps, "denoising_strength": denoising_strength}


def job_column(prefix: str) -> JobColumn:
    """Build the result column inside the current layout."""
    preview = gr.Image(label="Live preview", type="pil", format="jpeg", interactive=False,
                       elem_id=f"{prefix}-preview", height=320)
    progress = gr.Markdown(elem_id=f"{prefix}-progress")
    gallery = gr.Gallery(label="Result", columns=2, height="auto", elem_id=f"{prefix}-result", format="png")
    info = gr.JSON(label="Info", elem_id=f"{prefix}-info")
    with gr.Row():
        reuse = gr.Button("Reuse settings", size="sm")
        reuse_seed = gr.Button("Reuse seed", size="sm")
    return JobColumn(preview, progress, gallery, info, reuse, reuse_seed)


def coerce(values: Mapping[str, Any]) -> dict[str, Any]:
    """Sliders and numbers arrive as floats; whole-number fields become ints when they are whole."""
    out = dict(values)
    for name in WHOLE_NAMES:
        value = out.get(name)
        if isinstance(value, float) and value.is_integer():
            out[name] = int(value)
    for name in ("prompt", "negative_prompt", "model", "vae", "refiner_checkpoint"):
        if name in out and out[name] is None:
            out[name] = ""
    return out


def check_request(services: Services, mode: str, fields: Mapping[str, gr.components.Component],
                  values: Mapping[str, Any]) -> tuple[ImageRequest | None, dict[str, str]]:
    """The job request the values make, checked by the image service (which reads the uploaded files), or None and
    {field: message} for every bad value, each on a field of `fields`."""
    optional = [name for name in IMAGE_NAMES if name in fields]  # empty: the service says whether it is needed
    wrong = type_errors(fields, values, optional=optional)
    given = {name: Path(value["path"]) if name in IMAGE_NAMES and value is not None else value
             for name, value in values.items() if name not in wrong}
    req, errors = services.images.check(mode=mode, **given)
    errors = {**errors, **wrong}
    # A message about a field this event does not take (say, a mode rule) still refuses the request, on the first.
    first = next(iter(fields))
    for name in [n for n in errors if n not in fields]:
        message = errors.pop(name)
        errors[first] = f"{errors[first]} {message}" if first in errors else message
    return (None if errors else req), errors


async def stream_job(services: Services, req: ImageRequest, request: gr.Request | None, progress: gr.Progress,
                     tell_place: PlaceTeller | None = None) -> AsyncIterator[tuple[Any, str, Any, Any]]:
    """Start one checked job; stream (preview, progress text, gallery, info), ending with the stored PNGs."""
    with job_context(request):
        handle = services.images.start(req, user=user_of(request))
    shown = StreamGate(services.settings.stream_interval_s)
    # Woken by each update: the result goes out as soon as the job ends, and nothing wakes while nothing happens.
    # A snapshot the gate held back goes out once the job has been quiet for the interval.
    async for snap in handle.watch(poll_s=None, idle_s=shown.interval_s or None):
        if snap.status == "failed":
            said = failure_text(services, snap)
            yield gr.skip(), f"Job {snap.job_id} failed. {said}" if snap.job_id else said, gr.skip(), gr.skip()
            raise error_toast(said)
        if not shown.due(snap):
            continue  # coalesced: the next update carries the latest preview and step
        if snap.total and not snap.finished:
            progress((snap.step, snap.total), desc=snap.message)
        gallery_value = [(str(p), f"seed {s}") for p, s in zip(snap.files, snap.info.get("seeds", []), strict=False)]
        yield (shown.changed("preview", snap.preview), snap.message,
               gallery_value if snap.finished else gr.skip(), shown.changed("info", snap.info))
        if snap.place is not None and tell_place is not None:
            # In the batcher's line: the place and ETA show where Gradio shows a queued job's. Told after the
            # message above went out (Gradio sent it before asking for the next), which would else say "running";
            # the message once the job starts puts the client back to "running".
            tell_place(snap.place, snap.waiting, snap.eta_s)


def open_single(info: dict[str, Any] | None) -> Any:
    """A single result opened in the gallery's preview, whose Download button saves that PNG with its parameters
    (the grid's button downloads every image as gallery.zip, one image too); several stay in the grid. Read from
    the job's info, not the gallery: no event lets Gradio decode pictures (api/internal_routes.py)."""
    files = (info or {}).get("files") if isinstance(info, dict) else None
    return gr.Gallery(selected_index=0) if isinstance(files, list) and len(files) == 1 else gr.skip()


def failure_text(services: Services, snap: Any) -> str:
    """Why a job failed, for its result column and toast; for a model that could not load, a pointer to the tab's
    model line (on the Image tab), which says what is missing and what to do: said once, not in three places."""
    slot = services.image_slot.status()
    if snap.error and slot.state.value == "failed" and snap.error == slot.reason:
        return "The image model is not available: the line at the top of the Image tab says why and what to do."
    return snap.error or snap.message


def job_event(services: Services, quota: QueueQuota, trigger: Callable[..., Any], mode: str,
              fields: dict[str, gr.components.Component], column: JobColumn, api_name: str,
              description: str) -> Any:
    """Wire `trigger` (a button's click, or .success of an earlier step) to run a job of `mode` on `fields`, which
    are the endpoint's parameters by name, in order; its validator refuses bad values before anything is queued."""

    def validate(request: gr.Request, **values: Any) -> Any:
        req, errors = check_request(services, mode, fields, coerce(values))
        if problem := quota.problem(request):
            errors["prompt"] = problem
        if not errors:
            hand_to_handler(request, req)
        return verdicts(list(fields), errors)

    async def run(request: gr.Request, progress: gr.Progress = gr.Progress(), **values: Any
                  ) -> AsyncIterator[tuple[Any, str, Any, Any]]:
        # The values were checked, and their images decoded, by the validator: they arrive as its request.
        req = checked_by_validator(request)
        async for update in stream_job(services, req, request, progress, quota.tell_place):
            yield update

    run.__doc__ = description + "\n\nArgs:\n" + "\n".join(f"    {name}: {PARAM_DOCS[name]}" for name in fields)
    event = trigger(
        run, inputs_kwargs=fields, outputs=column.outputs(), api_name=api_name, validator=validate, **RAW_INPUTS,
        # Several jobs at once, so that they can wait together in the batcher (services/batcher.py), which runs
        # one pipeline call at a time; Gradio's batch=True cannot stream previews (see the README).
        concurrency_limit=services.images.concurrency,
        # The queue position and ETA show over the result, while the preview above keeps streaming.
        concurrency_id="image", show_progress="full", show_progress_on=[column.gallery],
    )
    # A step of the UI's own, after the job: the endpoint's output stays the plain list of files.
    event.then(open_single, inputs=[column.info], outputs=[column.gallery], show_progress="hidden", **PRIVATE)
    return event


def wire_job(services: Services, quota: QueueQuota, trigger: Callable[..., Any], mode: str,
             fields: dict[str, gr.components.Component], column: JobColumn, stop_btn: gr.Button,
             description: str) -> Any:
    """An image-to-image tab's job: its event (job_event, the API named after `mode`), Stop cancelling it, and the
    column's Reuse buttons filling `fields`."""
    event = job_event(services, quota, trigger, mode, fields, column, mode, description)
    stop_btn.click(None, cancels=[event], **PRIVATE)
    wire_reuse(services, column, fields)
    return event


def field_values(info: Mapping[str, Any], names: list[str]) -> list[Any]:
    """Values for the components named `names` from a job's info, history entry or PNG Info dict (A1111's names
    too); the seed is the one actually used; a field the dict lacks keeps what the form shows (gr.skip())."""
    values = dict(info)
    if values.get("seed_used") is not None:
        values["seed"] = values["seed_used"]
    out = []
    for name in names:
        value = values.get(name, values.get(ALIASES.get(name, "")))
        out.append(gr.skip() if value is None else value)
    return out


def reused_models(services: Services, info: Mapping[str, Any]) -> dict[str, Any]:
    """The Checkpoint and VAE for reused settings, as the dropdowns' choices: those a job asked for (its
    `checkpoint` and `vae`, "" being Default), or those a PNG names (its Model: the default's label is Default).
    One this server does not have becomes Default, with a note; a PNG that names none keeps what the form shows."""
    catalog = services.catalog
    if "checkpoint" in info:  # a job of this server: what it asked for
        model, vae = info["checkpoint"], info.get("vae")
    else:  # a PNG: the checkpoint that made it, by the name PNGs carry
        model, vae = info.get("model"), info.get("vae")
        model = "" if model == services.image_slot.default_model else model
    refiner = info.get("refiner_checkpoint") or ""  # none written: the refiner was off
    return {"model": _listed(model, catalog.listed_model, "Checkpoint", "Default"),
            "vae": _listed(vae, catalog.listed_vae, "VAE", "Automatic"),
            "refiner_checkpoint": _listed(refiner, catalog.listed_model, "Refiner", "None")}


def _listed(name: Any, listed: Callable[[str], str | None], what: str, default: str) -> Any:
    """The dropdown choice for `name` ("" or one of `listed`'s), with a note when the server lacks it."""
    if not isinstance(name, str):
        return gr.skip()
    if not name or (choice := listed(name)) is not None:
        return choice if name else ""
    info_toast(f"{what} {excerpt(name)} is not on this server (any more): {default} is selected instead.")
    return ""


def reuse_values(services: Services, info: Mapping[str, Any], names: list[str]) -> list[Any]:
    """field_values, with the Checkpoint and VAE as choices of this server's dropdowns (reused_models)."""
    return field_values({**info, **reused_models(services, info)}, names)


def wire_reuse(services: Services, column: JobColumn, fields: dict[str, gr.components.Component]) -> None:
    """"Reuse settings" and "Reuse seed" fill the form from the last job's info."""
    names = [name for name in fields if name not in IMAGE_NAMES]

    def reuse_settings(info: dict[str, Any] | None) -> list[Any]:
        if not info or "prompt" not in info:
            raise error_toast("Nothing to reuse yet: generate an image first.")
        return reuse_values(services, info, names)

    def reuse_seed(info: dict[str, Any] | None) -> int:
        if not info or info.get("seed") is None:
            raise error_toast("No seed to reuse yet: generate an image first.")
        return int(info["seed"])

    column.reuse.click(reuse_settings, inputs=[column.info], outputs=[fields[n] for n in names], **PRIVATE)
    column.reuse_seed.click(reuse_seed, inputs=[column.info], outputs=[fields["seed"]], **PRIVATE)


class StreamGate:
    """Which of a job's snapshots become messages: the first, the final one and a new place in line at once,
    anything else (status, step, preview) at most once per `interval_s` (a message costs a Gradio postprocess and
    an SSE event on the CPU the pipeline needs; a quick job's waiting → loading → running took three); and of the
    outputs, only those that changed since the last message. A snapshot held back is sent when it comes again
    after the interval (the watcher repeats the latest one when the job is quiet)."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.version = -1  # of the snapshot sent last
        self.place: int | None = None
        self.last = -math.inf
        self.sent: dict[str, Any] = {"preview": None}  # a new job keeps the last preview until it has one

    def due(self, snap: Any) -> bool:
        """True when `snap` should be sent now."""
        if snap.version == self.version:
            return False  # sent already (a repeat after a quiet spell)
        now = time.monotonic()
        place = getattr(snap, "place", None)
        if snap.finished or self.version == -1 or place != self.place or now - self.last >= self.interval_s:
            self.version, self.place, self.last = snap.version, place, now
            return True
        return False

    def changed(self, name: str, value: Any) -> Any:
        """`value` if it is not the object sent last time under `name`, else gr.skip() (nothing to re-encode)."""
        if name in self.sent and self.sent[name] is value:
            return gr.skip()
        self.sent[name] = value
        return value
