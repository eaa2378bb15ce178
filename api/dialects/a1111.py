"""AUTOMATIC1111's API under /sdapi/v1, so that scripts and plug-ins written for it (the `webuiapi` package, Open
WebUI's and SillyTavern's image generation) can use Atelier instead.

Each route translates A1111's request into the image service call the UI makes (the same validation, batching,
result cache, history and PNG metadata) and the result back into A1111's answer: `{images, parameters, info}` with
the base64 PNGs as stored (their `parameters` chunk included) and `info` the JSON string webuiapi parses, its
`infotexts` the very text in those PNGs. Unlike A1111, everything is per user: progress, interrupt and skip see only
the caller's own jobs, and the options (sd_model_checkpoint, sd_vae) are the caller's own defaults. Errors come in
A1111's shape, `{"error", "detail", "body", "errors"}`, with 422 and the field's name for a bad field.
"""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Query, Request
from pydantic import BaseModel

from api.dialects.a1111_catalog import add_routes as add_catalog_routes
from api.dialects.a1111_catalog import options_of, save_options
from api.dialects.a1111_requests import (
    MODEL_OPTIONS,
    A1111Body,
    Img2ImgBody,
    Txt2ImgBody,
    a1111_errors,
    base_params,
    controlnet_units,
    hires_errors,
    hires_scale,
    model_name,
    vae_name,
)
from api.dialects.common import (
    ApiProblem,
    DialectContext,
    decode_base64,
    dialect_app,
    finish,
    image_body_limit,
    invalid,
    run_sync,
)
from contracts import InvalidRequest
from services import pnginfo
from services.images import JobSnapshot
from settings import Settings

PREFIX = "/sdapi/v1"


class ImagesResponse(BaseModel):
    """TextToImageResponse / ImageToImageResponse: base64 PNGs, the request's parameters, info as a JSON string."""

    images: list[str] | None = None
    parameters: dict[str, Any]
    info: str


class PngInfoBody(BaseModel):
    """PNGInfoRequest: the base64 image."""

    image: str


class PngInfoResponse(BaseModel):
    """PNGInfoResponse: the raw infotext, the image's other text items, and the infotext's fields."""

    info: str
    items: dict[str, Any]
    parameters: dict[str, Any]


class ProgressResponse(BaseModel):
    """ProgressResponse: the caller's current job."""

    progress: float
    eta_relative: float
    state: dict[str, Any]
    current_image: str | None = None
    textinfo: str | None = None
    current_task: str | None = None


class A1111Error(BaseModel):
    """AUTOMATIC1111's error shape: the error's name, its detail (for a bad field, FastAPI's list naming it), the
    body, and the errors in words."""

    error: str
    detail: Any
    body: Any
    errors: Any


def error_body(status: int, message: str, errors: dict[str, str], code: str | None) -> dict[str, Any]:
    """A1111's error shape (api_middleware's handle_exception); `detail` lists the bad fields as FastAPI does."""
    detail: Any = message
    if status == 422 and errors:
        detail = [{"loc": ["body", *field.split(".")], "msg": text, "type": "value_error"}
                  for field, text in errors.items()]
    names = {401: "Unauthorized", 404: "NotFound", 413: "RequestTooLarge", 422: "ValidationError",
             429: "TooManyRequests", 503: "ServiceUnavailable"}
    return {"error": names.get(status, "HTTPException"), "detail": detail, "body": "",
            "errors": "; ".join(errors.values()) if errors else message}


def refusal(status: int, message: str) -> bytes:
    """The gateway's refusals (429 over a limit, 503 while the shared state is away) in A1111's shape."""
    return json.dumps(error_body(status, message, {}, None)).encode()


def kind(method: str, path: str) -> str:
    """The rate limit a request counts against: image jobs for txt2img and img2img, reads for the rest."""
    return "image" if method == "POST" and path.rstrip("/").endswith(("/txt2img", "/img2img")) else "read"


def body_limit(settings: Settings) -> Callable[[str], int]:
    """The largest body of each route: img2img's carries an init image and a mask, png-info's an image."""

    def limit(path: str) -> int:
        # img2img: the init image and the mask; png-info: the image; each job: one ControlNet unit's picture too.
        path = path.rstrip("/")
        return image_body_limit(settings, 3 if path.endswith("/img2img") else 1 if path.endswith("/txt2img") else
                                2 if path.endswith("/png-info") else 0)

    return limit


def build_app(ctx: DialectContext) -> FastAPI:
    """The /sdapi/v1 app, bound to the server's services."""
    app = dialect_app("Atelier: AUTOMATIC1111-compatible API", "AUTOMATIC1111's /sdapi/v1, served by Atelier.",
                      error_body, validation_status=422, error_model=A1111Error)
    add_job_routes(app, ctx)
    add_catalog_routes(app, ctx)
    add_state_routes(app, ctx)
    return app


def caller(ctx: DialectContext) -> Any:
    """A dependency giving the user a request comes from (a 401 first, before its body is even checked)."""

    def who(request: Request) -> str:
        return ctx.user(request, realm="Atelier /sdapi/v1")

    return Depends(who)


def add_job_routes(app: FastAPI, ctx: DialectContext) -> None:
    """txt2img, img2img and png-info."""
    me = caller(ctx)

    @app.post("/txt2img", response_model=ImagesResponse, summary="Text to image")
    async def txt2img(body: Txt2ImgBody, request: Request, user: str = me) -> dict[str, Any]:
        """A txt2img job (with hires fix), as in the UI; the images are the stored PNGs, base64."""
        return await run_job(ctx, request, user, body, "txt2img")

    @app.post("/img2img", response_model=ImagesResponse, summary="Image to image, or inpaint with a mask")
    async def img2img(body: Img2ImgBody, request: Request, user: str = me) -> dict[str, Any]:
        """img2img from init_images[0], or inpainting when a mask (white = repaint) is sent."""
        return await run_job(ctx, request, user, body, "inpaint" if body.mask else "img2img")

    @app.post("/png-info", response_model=PngInfoResponse, summary="The generation settings in an image")
    async def png_info(body: PngInfoBody, user: str = me) -> dict[str, Any]:
        """The infotext an Atelier or A1111 image carries, and its fields."""
        return await run_sync(read_png_info, ctx, body.image)


async def run_job(ctx: DialectContext, request: Request, user: str, body: A1111Body, mode: str) -> dict[str, Any]:
    """Check, admit and run one image job of `mode`; A1111's answer once it ends."""
    req = await run_sync(checked_request, ctx, user, body, mode)
    images = ctx.services.images
    handle = ctx.admit(user, "image", "a1111", ctx.services.image_slot,
                       lambda ref: images.start(req, user, source="a1111", ref=ref))
    snap: JobSnapshot = await finish(handle, request)
    if snap.status == "failed":
        raise ApiProblem(503, f"The job failed: {snap.error or snap.message}", code="job_failed")
    return await run_sync(job_response, ctx, user, body, snap)


def checked_request(ctx: DialectContext, user: str, body: A1111Body, mode: str) -> Any:
    """Atelier's checked ImageRequest for an A1111 body (a 422 naming each bad field, in A1111's names)."""
    services = ctx.services
    params, errors = base_params(body, services.images.defaults)
    params["model"], params["vae"], model_errors = model_choice(ctx, user, body)
    params["controlnet"], unit_errors = controlnet_units(body)
    errors |= model_errors | unit_errors
    if isinstance(body, Txt2ImgBody):
        errors |= hires_errors(body, params["sampler"])
        scale, scale_errors = hires_scale(body, params["width"], params["height"])
        errors |= scale_errors
        params |= {"enable_hr": body.enable_hr, "hr_scale": scale, "hr_upscaler": body.hr_upscaler or "Latent",
                   "hr_second_pass_steps": body.hr_second_pass_steps,
                   "denoising_strength": 0.7 if body.denoising_strength is None else body.denoising_strength}
    elif isinstance(body, Img2ImgBody):
        params |= image_inputs(ctx, body, mode, errors)
    if errors:
        raise invalid(a1111_errors(errors, body), status=422)
    try:
        return services.images.validate(mode=mode, **params)
    except InvalidRequest as err:
        raise invalid(a1111_errors(err.errors, body), status=422) from None


def image_inputs(ctx: DialectContext, body: Img2ImgBody, mode: str, errors: dict[str, str]) -> dict[str, Any]:
    """img2img's and inpainting's fields in Atelier's names, the images as bytes (decoded by the service)."""
    limit = ctx.settings.upload_max_bytes
    params: dict[str, Any] = {"denoising_strength": 0.75 if body.denoising_strength is None
                              else body.denoising_strength, "resize_mode": body.resize_mode}
    if not body.init_images:
        errors["init_images"] = "init_images: send one image (base64) to start from."
    elif len(body.init_images) > 1:
        errors["init_images"] = "init_images: Atelier starts from one image; send one."
    else:
        params["init_image"] = decode_base64(body.init_images[0], "init_images", limit)
    if body.latent_mask:
        errors["latent_mask"] = "latent_mask: a separate latent mask is not part of Atelier; leave it empty."
    if mode == "inpaint" and body.mask:
        params |= {"mask": decode_base64(body.mask, "mask", limit),
                   "mask_blur": body.mask_blur if body.mask_blur is not None else max(body.mask_blur_x,
                                                                                      body.mask_blur_y),
                   "inpainting_fill": body.inpainting_fill, "inpaint_full_res": body.inpaint_full_res,
                   "inpaint_full_res_padding": body.inpaint_full_res_padding,
                   "inpainting_mask_invert": body.inpainting_mask_invert}
    return params


def model_choice(ctx: DialectContext, user: str, body: A1111Body) -> tuple[str, str, dict[str, str]]:
    """The checkpoint and VAE of a job: override_settings, else the user's own defaults (POST /options), else the
    server's; ("" = the server's default) and errors for names that are not checkpoints or VAEs here."""
    saved = ctx.services.preferences.get(user)
    overrides = body.override_settings or {}
    model = model_name(overrides.get("sd_model_checkpoint", saved.get("sd_model_checkpoint", "")),
                       ctx.services.default_models["image"])
    vae = vae_name(overrides.get("sd_vae", saved.get("sd_vae", "")))
    errors: dict[str, str] = {}
    for key, value in (("sd_model_checkpoint", model), ("sd_vae", vae)):
        if not isinstance(value, str):
            errors[f"override_settings.{key}"] = f"override_settings.{key} must be a name (text), got {value!r}."
    return (model if isinstance(model, str) else ""), (vae if isinstance(vae, str) else ""), errors


def job_response(ctx: DialectContext, user: str, body: A1111Body, snap: JobSnapshot) -> dict[str, Any]:
    """A1111's TextToImageResponse for a finished (or stopped) job: the stored PNGs and their infotexts."""
    job = ctx.services.history.get_job(snap.job_id, user) if snap.job_id is not None else None
    files = job["files"] if job and snap.status == "done" else []
    pngs = [Path(ctx.services.history.file_path(f["file"])).read_bytes() for f in files]
    infotexts = [_infotext(png) for png in pngs]
    parameters = body.model_dump()
    if isinstance(body, Img2ImgBody) and not body.include_init_images:
        parameters["init_images"], parameters["mask"] = None, None  # as A1111 leaves them out
    images = [base64.b64encode(png).decode() for png in pngs] if body.send_images else []
    return {"images": images, "parameters": parameters, "info": json.dumps(info_of(snap, job, files, infotexts))}


def _infotext(png: bytes) -> str:
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        return str(image.info.get("parameters", ""))


def info_of(snap: JobSnapshot, job: dict[str, Any] | None, files: list[dict[str, Any]],
            infotexts: list[str]) -> dict[str, Any]:
    """A1111's `info` (Processed.js()) for a job, with the fields read back from its own infotext."""
    info = snap.info or {}
    seeds = [f["seed"] for f in files] or list(info.get("seeds", []))
    pairs = pnginfo.infotext_fields(infotexts[0]) if infotexts else {}
    standard = {"Prompt", "Negative prompt", "Steps", "Sampler", "CFG scale", "Seed", "Size", "Model", "Model hash",
                "VAE", "Denoising strength"}
    prompt, negative = info.get("prompt", ""), info.get("negative_prompt", "")
    return {
        "prompt": prompt, "all_prompts": [prompt] * len(seeds), "negative_prompt": negative,
        "all_negative_prompts": [negative] * len(seeds), "seed": seeds[0] if seeds else info.get("seed"),
        "all_seeds": seeds, "subseed": -1, "all_subseeds": [-1] * len(seeds), "subseed_strength": 0,
        "width": info.get("width"), "height": info.get("height"), "sampler_name": info.get("sampler"),
        "cfg_scale": info.get("cfg_scale"), "steps": info.get("steps"), "batch_size": len(seeds),
        "restore_faces": False, "face_restoration_model": None, "sd_model_name": pairs.get("Model", info.get("model")),
        "sd_model_hash": pairs.get("Model hash"), "sd_vae_name": pairs.get("VAE"), "sd_vae_hash": None,
        "seed_resize_from_w": -1, "seed_resize_from_h": -1,
        "denoising_strength": float(pairs["Denoising strength"]) if "Denoising strength" in pairs else None,
        "extra_generation_params": {k: v for k, v in pairs.items() if k not in standard},
        "index_of_first_image": 0, "infotexts": infotexts, "styles": [], "clip_skip": 1,
        "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime()), "is_using_inpainting_conditioning": False,
        "version": "atelier", "job_id": snap.job_id, "file_ids": [f["id"] for f in files],
        "interrupted": snap.status == "cancelled", "cached": bool(info.get("cached")),
    }


def read_png_info(ctx: DialectContext, image: str) -> dict[str, Any]:
    """png-info's answer for a base64 image: {} fields for an image without settings, as A1111 answers."""
    data = decode_base64(image, "image", ctx.settings.upload_max_bytes)
    try:
        text = pnginfo.read_text(data, "image", ctx.services.uploads.limits)
    except InvalidRequest as err:
        if "carries no generation parameters" in str(err):
            return {"info": "", "items": {}, "parameters": {}}
        raise invalid(err.errors, status=422) from None
    return {"info": text, "items": {}, "parameters": pnginfo.infotext_fields(text)}


def add_state_routes(app: FastAPI, ctx: DialectContext) -> None:
    """progress, interrupt, skip and the per-user options."""
    running = ctx.services.running
    me = caller(ctx)

    @app.get("/progress", response_model=ProgressResponse, summary="Your current image job")
    async def progress(skip_current_image: bool = Query(False), user: str = me) -> dict[str, Any]:
        """Progress of the caller's own current image job (and its live preview unless skip_current_image)."""
        return progress_of(running.of(user, "image"), skip_current_image)

    @app.post("/interrupt", summary="Stop your current image jobs")
    async def interrupt(user: str = me) -> dict[str, Any]:
        """Stops the caller's own image jobs, never anyone else's (A1111 stops whatever runs)."""
        running.stop_all(user, "image")
        return {}

    @app.post("/skip", summary="Skip: stop your current image jobs")
    async def skip(user: str = me) -> dict[str, Any]:
        """As interrupt: Atelier makes a job's images in one pass, so skipping the current one ends the job."""
        running.stop_all(user, "image")
        return {}

    @app.get("/options", summary="Your options")
    async def get_options(user: str = me) -> dict[str, Any]:
        """sd_model_checkpoint and sd_vae are the caller's own defaults; the rest describe Atelier."""
        return await run_sync(options_of, ctx, user)

    @app.post("/options", summary="Set your options")
    async def set_options(options: dict[str, Any], user: str = me) -> None:
        """Sets the caller's default checkpoint and VAE (nobody else's); other options are accepted and ignored."""
        await run_sync(save_options, ctx, user, {k: options[k] for k in MODEL_OPTIONS if k in options})


def progress_of(jobs: list[Any], skip_image: bool) -> dict[str, Any]:
    """A1111's ProgressResponse for the caller's running image jobs (the first is the current one)."""
    state = {"skipped": False, "interrupted": False, "stopping_generation": False, "job": "",
             "job_count": len(jobs), "job_timestamp": "0", "job_no": 0, "sampling_step": 0, "sampling_steps": 0}
    if not jobs:
        return {"progress": 0.0, "eta_relative": 0.0, "state": state, "current_image": None, "textinfo": None}
    current = next((j for j in jobs if j.handle.snapshot().status == "running"), jobs[0])
    snap = current.handle.snapshot()
    done = snap.step / snap.total if snap.total else 0.0
    elapsed = time.time() - current.started
    state |= {"job": f"job {snap.job_id}" if snap.job_id else current.ref, "sampling_step": snap.step,
              "sampling_steps": snap.total, "interrupted": current.handle.stop_event.is_set(),
              "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime(current.started))}
    image = None
    if not skip_image and snap.preview is not None:
        buffer = io.BytesIO()
        snap.preview.save(buffer, format="PNG")
        image = base64.b64encode(buffer.getvalue()).decode()
    return {"progress": round(done, 4), "eta_relative": round(elapsed / done - elapsed, 2) if done else 0.0,
            "state": state, "current_image": image, "textinfo": snap.message, "current_task": current.ref}
