"""AUTOMATIC1111's request bodies (`modules/api/models.py`: StableDiffusionTxt2ImgProcessingAPI and
StableDiffusionImg2ImgProcessingAPI) and their translation into Atelier's image request.

Every field A1111 defines is accepted, with A1111's defaults, so that scripts written for it (webuiapi sends almost
all of them) work unchanged. The fields Atelier honours map onto its request; a field that would change the image
in a way Atelier cannot (face restoration, tiling, variation seeds, scripts, styles) is refused with a 422 naming
it, unless it holds the value that changes nothing; sampler noise settings (eta, s_churn, …) are accepted and have
no effect, as with most of A1111's own samplers. Fields A1111 does not define are ignored, as A1111 ignores them.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from contracts import SAMPLERS

# A1111's newer API names the schedule apart (sampler "DPM++ 2M", scheduler "Karras"); Atelier's list names the pair.
AUTOMATIC_SCHEDULERS = ("", "automatic", "Automatic")
CONTROLNET = "controlnet"  # sd-webui-controlnet's alwayson script, by the lowercased name A1111 matches
SAME = ("", "Use same checkpoint", "Use same sampler", "Use same scheduler")
# override_settings and /options keys Atelier honours, and those it accepts when they hold A1111's default.
MODEL_OPTIONS = ("sd_model_checkpoint", "sd_vae")
DEFAULT_OPTIONS: dict[str, Any] = {"CLIP_stop_at_last_layers": 1}
_TITLE_HASH = re.compile(r"\s*\[[0-9a-fA-F]{8,64}\]$")


def model_name(title: Any, default_title: str) -> Any:
    """A checkpoint's name for the image service from A1111's title ("name.safetensors [hash]"); "" for the
    server's default (`default_title`, which /sd-models lists first); a value that is no text stays, to be refused."""
    if not isinstance(title, str):
        return title
    clean = _TITLE_HASH.sub("", title.strip())
    return "" if clean in ("", default_title) else clean


def vae_name(value: Any) -> Any:
    """A VAE's name; A1111's "Automatic" and "None" both mean the checkpoint's own VAE here."""
    return "" if isinstance(value, str) and value.strip() in ("", "Automatic", "None") else value


class A1111Body(BaseModel):
    """The fields txt2img and img2img share (A1111 1.10), with A1111's defaults; None means "the server's
    default" for the size, steps, CFG and sampler."""

    model_config = ConfigDict(extra="ignore")

    prompt: str = ""
    negative_prompt: str = ""
    styles: list[str] | None = None
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0.0
    seed_resize_from_h: int = -1
    seed_resize_from_w: int = -1
    sampler_name: str | None = None
    sampler_index: str | None = None
    scheduler: str | None = None
    batch_size: int = Field(default=1, description="Images per batch; Atelier makes batch_size × n_iter images.")
    n_iter: int = 1
    steps: int | None = None
    cfg_scale: float | None = None
    distilled_cfg_scale: float | None = None
    width: int | None = None
    height: int | None = None
    restore_faces: bool | None = None
    tiling: bool | None = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    eta: float | None = None
    denoising_strength: float | None = None
    s_min_uncond: float | None = None
    s_churn: float | None = None
    s_tmax: float | None = None
    s_tmin: float | None = None
    s_noise: float | None = None
    override_settings: dict[str, Any] | None = None
    override_settings_restore_afterwards: bool = True
    refiner_checkpoint: str | None = None
    refiner_switch_at: float | None = None
    disable_extra_networks: bool = False
    comments: dict[str, Any] | None = None
    force_task_id: str | None = None
    script_name: str | None = None
    script_args: list[Any] = Field(default_factory=list)
    send_images: bool = True
    save_images: bool = False
    alwayson_scripts: dict[str, Any] = Field(default_factory=dict)
    infotext: str | None = None


class Txt2ImgBody(A1111Body):
    """POST /sdapi/v1/txt2img: the shared fields and the hires fix."""

    enable_hr: bool = False
    firstphase_width: int = 0
    firstphase_height: int = 0
    hr_scale: float = 2.0
    hr_upscaler: str | None = None
    hr_second_pass_steps: int = 0
    hr_resize_x: int = 0
    hr_resize_y: int = 0
    hr_checkpoint_name: str | None = None
    hr_sampler_name: str | None = None
    hr_scheduler: str | None = None
    hr_prompt: str = ""
    hr_negative_prompt: str = ""
    firstpass_image: str | None = None


class Img2ImgBody(A1111Body):
    """POST /sdapi/v1/img2img: the shared fields, the init image, and the inpainting fields when a mask is sent."""

    init_images: list[str] | None = None
    resize_mode: int = 0
    image_cfg_scale: float | None = None
    mask: str | None = None
    mask_blur_x: int = 4
    mask_blur_y: int = 4
    mask_blur: int | None = None
    mask_round: bool = True
    inpainting_fill: int = 0
    inpaint_full_res: bool = True
    inpaint_full_res_padding: int = 0
    inpainting_mask_invert: int = 0
    initial_noise_multiplier: float | None = None
    latent_mask: str | None = None
    include_init_images: bool = False


def sampler_of(name: str | None, scheduler: str | None) -> tuple[str | None, dict[str, str]]:
    """Atelier's sampler for A1111's sampler and scheduler names (None: the server's default), or the errors."""
    if name is None:
        return None, {}
    schedule = (scheduler or "").strip()
    if schedule.lower() in ("", "automatic"):
        return name, {}
    combined = f"{name} {schedule.capitalize()}"
    if combined in SAMPLERS:
        return combined, {}
    if name.endswith(schedule.capitalize()) and name in SAMPLERS:  # "DPM++ 2M Karras" with scheduler "karras"
        return name, {}
    return name, {"scheduler": f"scheduler {scheduler!r} cannot be used with sampler {name!r} here; use "
                               f"'automatic' (or 'karras' with DPM++ 2M); GET /sdapi/v1/schedulers lists them."}


def unsupported(body: A1111Body) -> dict[str, str]:
    """{field: message} for fields that ask for what Atelier cannot do (each message says what to send instead)."""
    errors: dict[str, str] = {}
    checks: list[tuple[str, bool, str]] = [
        ("restore_faces", bool(body.restore_faces), "face restoration is not part of Atelier; send false."),
        ("tiling", bool(body.tiling), "tiling is not part of Atelier; send false."),
        ("subseed_strength", body.subseed_strength != 0, "variation seeds are not part of Atelier; send 0."),
        ("styles", bool(body.styles), "Atelier has no saved prompt styles (GET /sdapi/v1/prompt-styles lists "
                                      "none); put the text in the prompt."),
        ("script_name", bool(body.script_name), "Atelier runs no scripts (GET /sdapi/v1/scripts lists none)."),
        ("alwayson_scripts", any(_script_on(v) for k, v in body.alwayson_scripts.items() if k.lower() != CONTROLNET),
         "Atelier runs no scripts or extensions but ControlNet (alwayson_scripts.ControlNet.args: its units)."),
    ]
    for field, wrong, message in checks:
        if wrong:
            errors[field] = f"{field}: {message}"
    for key, value in (body.override_settings or {}).items():
        if key in DEFAULT_OPTIONS and value != DEFAULT_OPTIONS[key]:
            errors[f"override_settings.{key}"] = (f"override_settings.{key}: Atelier supports only "
                                                  f"{DEFAULT_OPTIONS[key]!r}.")
    return errors


def controlnet_units(body: A1111Body) -> tuple[list[Any], dict[str, str]]:
    """sd-webui-controlnet's units from ``alwayson_scripts: {"ControlNet": {"args": [unit, …]}}`` (the name in any
    case, as A1111 matches it), each in the extension's API names; the services check them."""
    entry = next((v for k, v in body.alwayson_scripts.items() if k.lower() == CONTROLNET), None)
    if entry is None:
        return [], {}
    args = entry.get("args") if isinstance(entry, dict) else entry
    if not isinstance(args, list):
        return [], {"controlnet": "controlnet: alwayson_scripts.ControlNet must be {\"args\": [unit, …]}."}
    return args, {}


def _script_on(value: Any) -> bool:
    """An alwayson script entry that asks for something: {"args": []} or {"args": [False]} asks for nothing."""
    args = value.get("args") if isinstance(value, dict) else value
    return bool(args) and args not in ([False], [None])


def hires_errors(body: Txt2ImgBody, sampler: str | None) -> dict[str, str]:
    """Hires fix settings that differ from the first pass's, which Atelier's one-job hires fix cannot do."""
    errors: dict[str, str] = {}
    if (body.hr_checkpoint_name or "") not in SAME:
        errors["hr_checkpoint_name"] = "hr_checkpoint_name: the hires pass uses the job's checkpoint; leave it empty."
    if (body.hr_sampler_name or "") not in (*SAME, sampler or "", body.sampler_name or ""):
        errors["hr_sampler_name"] = "hr_sampler_name: the hires pass uses the job's sampler; leave it empty."
    for field, own in (("hr_prompt", body.prompt), ("hr_negative_prompt", body.negative_prompt)):
        if getattr(body, field) not in ("", own):
            errors[field] = f"{field}: the hires pass uses the job's prompt; leave it empty."
    return errors


def hires_scale(body: Txt2ImgBody, width: int, height: int) -> tuple[float, dict[str, str]]:
    """The hires scale: hr_scale, or the one hr_resize_x / hr_resize_y ask for when it keeps the aspect ratio."""
    x, y = body.hr_resize_x, body.hr_resize_y
    if not x and not y:
        return body.hr_scale, {}
    scales = {s for s in ((x / width) if x else None, (y / height) if y else None) if s is not None}
    if len(scales) == 1 or (len(scales) == 2 and abs(x / width - y / height) < 0.01):
        return round(min(scales), 4), {}
    return body.hr_scale, {"hr_resize_x": f"hr_resize_x: {x}x{y} changes the aspect ratio of {width}x{height}; "
                                          "Atelier's hires fix scales both sides alike (use hr_scale)."}


def base_params(body: A1111Body, defaults: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The request fields both modes share, in Atelier's names, and the errors found so far."""
    sampler, errors = sampler_of(body.sampler_name or body.sampler_index, body.scheduler)
    params = {
        "prompt": body.prompt, "negative_prompt": body.negative_prompt,
        "width": body.width if body.width is not None else defaults.get("width", 512),
        "height": body.height if body.height is not None else defaults.get("height", 512),
        "steps": body.steps if body.steps is not None else defaults.get("steps", 20),
        "cfg_scale": body.cfg_scale if body.cfg_scale is not None else defaults.get("cfg_scale", 7.0),
        "sampler": sampler or defaults.get("sampler", "Euler a"),
        "seed": body.seed, "batch_count": body.batch_size * body.n_iter,
    }
    if body.refiner_checkpoint not in (None, "None", *SAME):  # another SDXL checkpoint takes over at switch_at
        params["refiner_checkpoint"] = body.refiner_checkpoint
        if body.refiner_switch_at is not None:
            params["refiner_switch_at"] = body.refiner_switch_at
    if body.batch_size < 1:
        errors["batch_size"] = f"batch_size must be at least 1, got {body.batch_size}."
    if body.n_iter < 1:
        errors["n_iter"] = f"n_iter must be at least 1, got {body.n_iter}."
    return params, {**unsupported(body), **errors}


# Atelier's field names as A1111's API spells them, for the errors of a checked request.
A1111_NAMES = {"sampler": "sampler_name", "init_image": "init_images", "model": "override_settings.sd_model_checkpoint",
               "vae": "override_settings.sd_vae"}


def a1111_errors(errors: dict[str, str], body: A1111Body) -> dict[str, str]:
    """A service's {field: message} with the fields named as the A1111 request named them."""
    renamed: dict[str, str] = {}
    for field, message in errors.items():
        name = A1111_NAMES.get(field, field)
        if field == "controlnet" or field.startswith("controlnet."):  # controlnet.0.weight: a unit's field
            name = "alwayson_scripts.ControlNet.args" + field.removeprefix("controlnet")
        if field == "batch_count":
            name = "n_iter" if body.n_iter > 1 else "batch_size"
            message = message.replace("batch_count", f"{name} (batch_size × n_iter images)")
        renamed[name] = message
    return renamed
