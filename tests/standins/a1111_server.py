"""A stand-in AUTOMATIC1111 WebUI API, written from A1111's published request/response models.

Field names follow ``modules/api/models.py``: ``StableDiffusionTxt2ImgProcessingAPI`` for ``POST
/sdapi/v1/txt2img`` (hires fix: ``enable_hr``, ``hr_scale``, ``hr_upscaler``, ``hr_second_pass_steps``),
``StableDiffusionImg2ImgProcessingAPI`` for ``POST /sdapi/v1/img2img`` (``init_images``, ``mask`` and the
inpaint fields), ``TextToImageResponse`` ``{images, parameters, info}`` (``info`` is a JSON string with
``seed`` and ``all_seeds``), ``ProgressResponse`` ``{progress, eta_relative, state, current_image, textinfo,
current_task}`` for ``GET /sdapi/v1/progress``, ``POST /sdapi/v1/interrupt`` and ``GET /sdapi/v1/options``
(``sd_model_checkpoint``). Like A1111 it runs one job at a time (its queue lock), counts steps in
``shared.state`` (``job_no``/``job_count``, ``sampling_step``/``sampling_steps``), shows a live preview, honours
``force_task_id``, stops at the next step on interrupt (returning what it has), prepends a grid to a
multi-image result unless ``do_not_save_grid``, and guards every route with HTTP Basic when ``--api-auth`` is
set. A hires job counts its second pass as a job of its own (``job_count`` doubled) and returns the upscaled
size; ``override_settings.sd_model_checkpoint`` picks the checkpoint for one job (an unknown one falls back to
the first, as A1111's ``select_checkpoint`` does). Its images tell a test what it was asked: each is the seed's
colour, blended over the resized init image by ``denoising_strength`` for img2img, and for inpaint only where
the (blurred, maybe inverted) mask is white, the init image's own pixels elsewhere, as A1111 pastes them back.
It is stricter than A1111 in one way: unknown request fields are rejected (422), to catch typos. With
sd-webui-controlnet installed (as here), ``alwayson_scripts.ControlNet.args`` takes units checked as the extension's
ControlNetUnit model checks them (internal_controlnet/args.py: its fields, weight 0..2, guidance 0..1, the modes by
name, a picture that decodes, a model it has); unknown unit fields are rejected too, and an unknown model fails the
job as the extension's "model not found" does.

Run it alone with ``python -m tests.standins.a1111_server --port 7861`` to point Atelier at it by hand.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

# StableDiffusionTxt2ImgProcessingAPI's fields (A1111 1.10), so that a misspelt field is caught.
TXT2IMG_FIELDS = frozenset({
    "prompt", "negative_prompt", "styles", "seed", "subseed", "subseed_strength", "seed_resize_from_h",
    "seed_resize_from_w", "sampler_name", "scheduler", "batch_size", "n_iter", "steps", "cfg_scale",
    "distilled_cfg_scale", "width", "height", "restore_faces", "tiling", "do_not_save_samples",
    "do_not_save_grid", "eta", "denoising_strength", "s_min_uncond", "s_churn", "s_tmax", "s_tmin", "s_noise",
    "override_settings", "override_settings_restore_afterwards", "refiner_checkpoint", "refiner_switch_at",
    "disable_extra_networks", "firstpass_image", "comments", "enable_hr", "firstphase_width",
    "firstphase_height", "hr_scale", "hr_upscaler", "hr_second_pass_steps", "hr_resize_x", "hr_resize_y",
    "hr_checkpoint_name", "hr_sampler_name", "hr_scheduler", "hr_prompt", "hr_negative_prompt",
    "force_task_id", "sampler_index", "script_name", "script_args", "send_images", "save_images",
    "alwayson_scripts", "infotext",
})
# StableDiffusionImg2ImgProcessingAPI's fields (A1111 1.10): the shared ones, without txt2img's hires fields.
IMG2IMG_FIELDS = (TXT2IMG_FIELDS - {
    "enable_hr", "firstphase_width", "firstphase_height", "hr_scale", "hr_upscaler", "hr_second_pass_steps",
    "hr_resize_x", "hr_resize_y", "hr_checkpoint_name", "hr_sampler_name", "hr_scheduler", "hr_prompt",
    "hr_negative_prompt", "firstpass_image",
}) | frozenset({
    "init_images", "resize_mode", "image_cfg_scale", "mask", "mask_blur_x", "mask_blur_y", "mask_blur",
    "mask_round", "inpainting_fill", "inpaint_full_res", "inpaint_full_res_padding", "inpainting_mask_invert",
    "initial_noise_multiplier", "latent_mask", "include_init_images",
})
# The upscalers a stand-in WebUI has: A1111's latent modes and two image upscalers.
UPSCALERS = ("Latent", "Latent (nearest)", "None", "Lanczos", "Nearest", "R-ESRGAN 4x+")
SAMPLERS = ("Euler a", "Euler", "LMS", "Heun", "DPM2", "DPM2 a", "DPM++ 2S a", "DPM++ 2M", "DPM++ SDE",
            "DPM++ 2M SDE", "DDIM", "PLMS", "UniPC", "LCM")
SCHEDULERS = ("Automatic", "Uniform", "Karras", "Exponential", "Polyexponential", "SGM Uniform")
# sd-webui-controlnet's ControlNetUnit API fields (internal_controlnet/args.py) and its enums' values.
CONTROLNET_UNIT_FIELDS = frozenset({
    "input_mode", "use_preview_as_input", "batch_image_dir", "batch_mask_dir", "batch_input_gallery",
    "batch_mask_gallery", "generated_image", "mask_image", "mask_image_fg", "hr_option", "enabled", "module",
    "model", "weight", "image", "image_fg", "resize_mode", "low_vram", "processor_res", "threshold_a",
    "threshold_b", "guidance_start", "guidance_end", "pixel_perfect", "control_mode", "save_detected_map",
    "inpaint_crop_input_image", "advanced_weighting", "effective_region_mask", "pulid_mode", "union_control_type",
    "ipadapter_input", "input_image", "guidance", "lowvram"})
CONTROL_RESIZE_MODES = ("Just Resize", "Crop and Resize", "Resize and Fill")
CONTROL_MODES = ("Balanced", "My prompt is more important", "ControlNet is more important")


def png_base64(width: int, height: int, color: tuple[int, int, int]) -> str:
    """A solid-colour PNG, base64-encoded as A1111 sends images."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def seed_color(seed: int) -> tuple[int, int, int]:
    """The colour an image of `seed` has, so a test can tell which seed made which image."""
    return (seed % 251, (seed // 251) % 251, (seed // 63001) % 251)


@dataclass
class Behaviour:
    """How the next requests go: timing, previews and failures."""

    step_delay_s: float = 0.01
    preview_every: int = 1  # 0: live previews off (A1111's "Show live previews" unticked)
    txt2img_status: int | None = None  # answer txt2img with this error status instead of running the job
    txt2img_malformed: bool = False  # answer 200 with a body that is not a TextToImageResponse
    report_task_id: bool = True  # False: an A1111 older than 1.6, whose progress has no current_task
    slow_s: float = 0.0  # delay before answering options and progress
    own_seeds: bool = False  # pick fresh seeds whatever was asked (as for seed -1): the info JSON tells which
    force_grid: bool = False  # prepend the grid even with do_not_save_grid (as A1111 versions before 1.0 did)
    options_status: int = 200


@dataclass
class StandinA1111:
    """The server's state: A1111's shared.state, plus what it has seen."""

    checkpoint: str = "v1-5-pruned-emaonly.safetensors [6ce0161689]"
    checkpoint_hash: str = "6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa"
    # Other checkpoints a job may pick through override_settings (title -> sha256).
    others: dict[str, str] = field(default_factory=lambda: {
        "sd-v1-5-inpainting.ckpt [c6bbc15e32]": "c6bbc15e3224e6973459ba78de4998b80b50112b0ae5b5c67113d56b4e366b19"})
    auth: tuple[str, str] | None = None
    # The ControlNet models of its extension, as /controlnet/model_list lists them.
    controlnet_models: tuple[str, ...] = ("control_v11p_sd15_canny [d14c016b]", "control_v11f1p_sd15_depth [cfd03158]")
    behaviour: Behaviour = field(default_factory=Behaviour)
    requests: list[dict[str, Any]] = field(default_factory=list)
    routes: list[str] = field(default_factory=list)  # "txt2img" or "img2img", one per request
    interrupts: list[str | None] = field(default_factory=list)  # current_task at each interrupt call
    progress_calls: int = 0
    _queue_lock: threading.Lock = field(default_factory=threading.Lock)
    _state_lock: threading.Lock = field(default_factory=threading.Lock)
    _state: dict[str, Any] = field(default_factory=dict)
    _current_task: str | None = None
    _current_image: str | None = None
    _interrupted: bool = False
    _started: float = 0.0

    def __post_init__(self) -> None:
        self._reset_state()

    def app(self) -> Starlette:
        """The ASGI app."""
        # Plain (sync) endpoints run in Starlette's thread pool, so a running job never blocks progress calls.
        return Starlette(routes=[
            Route("/sdapi/v1/txt2img", self.txt2img, methods=["POST"]),
            Route("/sdapi/v1/img2img", self.img2img, methods=["POST"]),
            Route("/sdapi/v1/progress", self.progress, methods=["GET"]),
            Route("/sdapi/v1/interrupt", self.interrupt, methods=["POST"]),
            Route("/sdapi/v1/options", self.options, methods=["GET"]),
            Route("/controlnet/model_list", self.controlnet_model_list, methods=["GET"]),
        ])

    @property
    def busy(self) -> bool:
        """Whether a job is running now."""
        return self._current_task is not None

    def _reset_state(self) -> None:
        self._state = {"skipped": False, "interrupted": False, "stopping_generation": False, "job": "",
                       "job_count": 0, "job_timestamp": "0", "job_no": 0, "sampling_step": 0, "sampling_steps": 0}

    def _denied(self, request: Request) -> Response | None:
        """HTTP Basic, as A1111's --api-auth checks it on every API route."""
        if self.auth is None:
            return None
        header = request.headers.get("authorization", "")
        try:
            user, _, password = base64.b64decode(header.removeprefix("Basic "), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user = password = ""
        if header.startswith("Basic ") and (user, password) == self.auth:
            return None
        return JSONResponse({"detail": "Incorrect username or password"}, status_code=401,
                            headers={"WWW-Authenticate": "Basic"})

    def options(self, request: Request) -> Response:
        """GET /sdapi/v1/options: a few of A1111's options."""
        if self.behaviour.slow_s:
            time.sleep(self.behaviour.slow_s)
        if (denied := self._denied(request)) is not None:
            return denied
        if self.behaviour.options_status != 200:
            return JSONResponse({"error": "RuntimeError", "detail": "", "body": "", "errors": "options broke"},
                                status_code=self.behaviour.options_status)
        return JSONResponse({"sd_model_checkpoint": self.checkpoint, "sd_checkpoint_hash": self.checkpoint_hash,
                             "samples_format": "png", "live_previews_enable": self.behaviour.preview_every > 0,
                             "show_progress_every_n_steps": self.behaviour.preview_every})

    def progress(self, request: Request) -> Response:
        """GET /sdapi/v1/progress: ProgressResponse, computed as A1111's progressapi does."""
        self.progress_calls += 1
        if self.behaviour.slow_s:
            time.sleep(self.behaviour.slow_s)
        if (denied := self._denied(request)) is not None:
            return denied
        skip_image = request.query_params.get("skip_current_image", "false").lower() == "true"
        with self._state_lock:
            state = dict(self._state)
            image = None if skip_image else self._current_image
            task = self._current_task
        progress = 0.0
        if state["job_count"] > 0:
            progress += state["job_no"] / state["job_count"]
            if state["sampling_steps"] > 0:
                progress += state["sampling_step"] / state["sampling_steps"] / state["job_count"]
        progress = min(progress, 1.0)
        elapsed = time.time() - self._started if task else 0.0
        eta_relative = (elapsed / progress - elapsed) if progress > 0 else 0.0
        body: dict[str, Any] = {"progress": progress, "eta_relative": eta_relative, "state": state,
                                "current_image": image, "textinfo": None}
        if self.behaviour.report_task_id:
            body["current_task"] = task
        return JSONResponse(body)

    def interrupt(self, request: Request) -> Response:
        """POST /sdapi/v1/interrupt: stop whatever job is running (A1111's interrupt is global)."""
        if (denied := self._denied(request)) is not None:
            return denied
        with self._state_lock:
            self.interrupts.append(self._current_task)
            if self._current_task is not None:
                self._interrupted = True
                self._state["interrupted"] = True
        return JSONResponse({})

    async def txt2img(self, request: Request) -> Response:
        """POST /sdapi/v1/txt2img: check the request, then run it in a worker thread."""
        return await self._job(request, "txt2img")

    async def img2img(self, request: Request) -> Response:
        """POST /sdapi/v1/img2img: img2img, or inpaint when a mask comes with it."""
        return await self._job(request, "img2img")

    async def _job(self, request: Request, kind: str) -> Response:
        if (denied := self._denied(request)) is not None:
            return denied
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"detail": "JSON decode error"}, status_code=422)
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(self._txt2img, body, kind)

    def _txt2img(self, body: dict[str, Any], kind: str = "txt2img") -> Response:
        self.requests.append(body)
        self.routes.append(kind)
        unknown = sorted(set(body) - (TXT2IMG_FIELDS if kind == "txt2img" else IMG2IMG_FIELDS))
        if unknown:
            return JSONResponse({"detail": [{"loc": ["body", k], "msg": "extra fields not permitted"}
                                            for k in unknown]}, status_code=422)
        problem = (self._check(body) or (self._check_img2img(body) if kind == "img2img" else self._check_hires(body))
                   or self._check_scripts(body))
        if problem is not None:
            return problem
        behaviour = self.behaviour
        if behaviour.txt2img_status is not None:
            # A1111's api_error handler body.
            return JSONResponse({"error": "OutOfMemoryError", "detail": "", "body": "",
                                 "errors": "CUDA out of memory. Tried to allocate 2.00 GiB"},
                                status_code=behaviour.txt2img_status)
        if behaviour.txt2img_malformed:
            return Response("<html>Internal Server Error</html>", status_code=200, media_type="text/html")
        with self._queue_lock:  # A1111's queue_lock: one job at a time, the others wait their turn
            return self._run(body)

    def _check(self, body: dict[str, Any]) -> Response | None:
        ints = ("seed", "steps", "width", "height", "batch_size", "n_iter")
        for name in ints:
            if name in body and not isinstance(body[name], int):
                return JSONResponse({"detail": [{"loc": ["body", name], "msg": "value is not a valid integer"}]},
                                    status_code=422)
        sampler = body.get("sampler_name") or body.get("sampler_index") or "Euler"
        # A1111 >= 1.9 still takes the old "DPM++ 2M Karras" names and splits off the scheduler.
        base = next((sampler.removesuffix(" " + s) for s in SCHEDULERS if sampler.endswith(" " + s)), sampler)
        if base not in SAMPLERS:
            return JSONResponse({"detail": "Sampler not found"}, status_code=404)
        return None

    def controlnet_model_list(self, request: Request) -> Response:
        """GET /controlnet/model_list (sd-webui-controlnet's): "None" first, as the extension lists it; 404 when
        the extension is not installed (no models configured)."""
        if (denied := self._denied(request)) is not None:
            return denied
        if not self.controlnet_models:
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        return JSONResponse({"model_list": ["None", *self.controlnet_models]})

    def _check_scripts(self, body: dict[str, Any]) -> Response | None:
        """alwayson_scripts: only ControlNet's (A1111 matches the script's title in any case), its units checked."""
        scripts = body.get("alwayson_scripts") or {}
        if not isinstance(scripts, dict):
            return _invalid("alwayson_scripts", "value is not a valid dict")
        for name, value in scripts.items():
            if name.lower() != "controlnet":
                return JSONResponse({"detail": f"always on script {name} not found"}, status_code=422)
            args = value.get("args") if isinstance(value, dict) else None
            if not isinstance(args, list):
                return _invalid("alwayson_scripts", f"{name}.args must be a list")
            for unit in args:
                if (problem := self._check_unit(unit)) is not None:
                    return problem
        return None

    def _check_unit(self, unit: Any) -> Response | None:
        if not isinstance(unit, dict):
            return _error("ControlNet unit is not a dict")
        if unknown := sorted(set(unit) - CONTROLNET_UNIT_FIELDS):
            return _invalid("alwayson_scripts", f"unknown ControlNet unit fields {unknown}")
        ranges = (("weight", 0.0, 2.0), ("guidance_start", 0.0, 1.0), ("guidance_end", 0.0, 1.0))
        for name, low, high in ranges:
            if name in unit and not (isinstance(unit[name], int | float) and low <= unit[name] <= high):
                return _invalid("alwayson_scripts", f"{name} must be from {low} to {high}")
        if unit.get("resize_mode", "Crop and Resize") not in CONTROL_RESIZE_MODES:
            return _invalid("alwayson_scripts", "resize_mode is not a valid ResizeMode")
        if unit.get("control_mode", "Balanced") not in CONTROL_MODES:
            return _invalid("alwayson_scripts", "control_mode is not a valid ControlMode")
        if unit.get("image") is not None and _decode(unit["image"]) is None:
            return _error("cannot identify image file")
        if unit.get("enabled") and unit.get("model") not in self.controlnet_models:
            return _error(f"model not found: {unit.get('model')}")  # the extension's ValueError: a 500
        return None

    @staticmethod
    def _check_img2img(body: dict[str, Any]) -> Response | None:
        """The img2img fields: images that decode, and the numbers in A1111's ranges."""
        images = body.get("init_images")
        if not isinstance(images, list) or not images:
            return _invalid("init_images", "field required")
        for name, value in [("init_images", images[0]), ("mask", body.get("mask"))]:
            if value is not None and _decode(value) is None:
                return _error(f"cannot identify image file in {name}")  # A1111's decode_base64_to_image: 500
        for name, low, high in [("resize_mode", 0, 3), ("inpainting_fill", 0, 3), ("inpainting_mask_invert", 0, 1),
                                ("mask_blur", 0, 64), ("inpaint_full_res_padding", 0, 256)]:
            if name in body and not (isinstance(body[name], int) and low <= body[name] <= high):
                return _invalid(name, f"must be an integer from {low} to {high}")
        if "inpaint_full_res" in body and not isinstance(body["inpaint_full_res"], bool):
            return _invalid("inpaint_full_res", "value could not be parsed to a boolean")
        return _check_strength(body)

    @staticmethod
    def _check_hires(body: dict[str, Any]) -> Response | None:
        """The hires fields of txt2img, checked as A1111 does when enable_hr is set."""
        if not body.get("enable_hr"):
            return None
        if body.get("hr_upscaler") not in (None, *UPSCALERS):
            return _error(f"could not find upscaler named {body['hr_upscaler']}")  # A1111's assert: 500
        if not isinstance(body.get("hr_scale", 2.0), int | float):
            return _invalid("hr_scale", "value is not a valid float")
        if not isinstance(body.get("hr_second_pass_steps", 0), int):
            return _invalid("hr_second_pass_steps", "value is not a valid integer")
        return _check_strength(body)

    def _checkpoint_for(self, body: dict[str, Any]) -> tuple[str, str]:
        """The (title, sha256) a job runs on: its override, else the loaded one; unknown names fall back."""
        wanted = (body.get("override_settings") or {}).get("sd_model_checkpoint")
        for title, sha in [(self.checkpoint, self.checkpoint_hash), *self.others.items()]:
            # A1111 matches a title, a file name or a name without the hash.
            if wanted and wanted in (title, title.split(" [")[0], title.split(".")[0]):
                return title, sha
        return self.checkpoint, self.checkpoint_hash

    @staticmethod
    def _picture(body: dict[str, Any], width: int, height: int, seed: int) -> str:
        """One result image: the seed's colour, over the init image for img2img and inpaint (see the docstring)."""
        from PIL import Image, ImageFilter, ImageOps

        color = seed_color(seed)
        images = body.get("init_images")
        if not images:
            return png_base64(width, height, color)
        init = _decode(images[0]).convert("RGB").resize((width, height))  # type: ignore[union-attr]
        made = Image.blend(init, Image.new("RGB", (width, height), color), float(body.get("denoising_strength", 0.75)))
        if body.get("mask") is not None:
            mask = _decode(body["mask"]).convert("L").resize((width, height))  # type: ignore[union-attr]
            if body.get("inpainting_mask_invert"):
                mask = ImageOps.invert(mask)
            if body.get("mask_blur"):
                mask = mask.filter(ImageFilter.GaussianBlur(body["mask_blur"]))
            made = Image.composite(made, init, mask)
        buffer = io.BytesIO()
        made.save(buffer, format="PNG")
        return base64.b64encode(buffer.getvalue()).decode()

    def _sample(self, steps: int) -> None:
        """One sampling pass: a step at a time, with a preview, until done or interrupted."""
        for step in range(steps):
            if self._interrupted:
                return  # the sampler's callback raises at the next step
            time.sleep(self.behaviour.step_delay_s)
            with self._state_lock:
                self._state["sampling_step"] = step + 1
                if self.behaviour.preview_every and (step + 1) % self.behaviour.preview_every == 0:
                    shade = 40 + 200 * (step + 1) // steps
                    self._current_image = png_base64(8, 8, (shade, shade, shade))

    def _run(self, body: dict[str, Any]) -> Response:
        behaviour = self.behaviour
        steps, n_iter, batch = body.get("steps", 50), body.get("n_iter", 1), body.get("batch_size", 1)
        width, height = body.get("width", 512), body.get("height", 512)
        hires = bool(body.get("enable_hr"))
        hr_steps = body.get("hr_second_pass_steps") or steps
        checkpoint, checkpoint_hash = self._checkpoint_for(body)
        seed = body.get("seed", -1)
        if seed == -1 or behaviour.own_seeds:
            seed = random.randint(0, 2**31)
        all_seeds = [seed + i for i in range(n_iter * batch)]
        task = body.get("force_task_id") or f"task({random.getrandbits(40):x})"
        with self._state_lock:
            self._current_task = task
            self._interrupted = False
            self._started = time.time()
            # With hires fix A1111 doubles job_count: each image's second pass is a job of its own.
            self._state.update(job="txt2img", job_count=n_iter * (2 if hires else 1), job_no=0, sampling_step=0,
                               sampling_steps=steps, interrupted=False, job_timestamp=time.strftime("%Y%m%d%H%M%S"))
        if hires:
            width, height = int(width * body.get("hr_scale", 2.0)), int(height * body.get("hr_scale", 2.0))
        images: list[str] = []
        try:
            for job_no in range(n_iter):
                if self._interrupted:
                    break  # A1111 checks state.interrupted before each batch
                passes = [steps, hr_steps] if hires else [steps]
                for pass_no, pass_steps in enumerate(passes):
                    with self._state_lock:
                        self._state.update(job_no=job_no * len(passes) + pass_no, sampling_step=0,
                                           sampling_steps=pass_steps)
                    self._sample(pass_steps)
                # The images of a batch are decoded and kept even when interrupted mid-way, as in A1111.
                for index in range(batch):
                    image_seed = all_seeds[job_no * batch + index]
                    images.append(self._picture(body, width, height, image_seed))
        finally:
            with self._state_lock:
                self._current_task = None
                self._current_image = None
                self._reset_state()
        done_seeds = all_seeds[: len(images)]
        if len(images) > 1 and (behaviour.force_grid or not body.get("do_not_save_grid", False)):
            images.insert(0, png_base64(width, height, (255, 255, 255)))  # opts.return_grid: the grid first
        info = {"prompt": body.get("prompt", ""), "all_prompts": [body.get("prompt", "")] * len(done_seeds),
                "negative_prompt": body.get("negative_prompt", ""), "seed": seed, "all_seeds": done_seeds,
                "subseed": -1, "all_subseeds": [-1] * len(done_seeds), "width": width, "height": height,
                "sampler_name": body.get("sampler_name"), "cfg_scale": body.get("cfg_scale", 7.0),
                "steps": steps, "batch_size": batch, "sd_model_name": checkpoint.split(".")[0],
                "sd_model_hash": checkpoint_hash[:10], "job_timestamp": self._state["job_timestamp"],
                "infotexts": [f"{body.get('prompt', '')}\nSteps: {steps}, Seed: {s}" for s in done_seeds]}
        return JSONResponse({"images": images, "parameters": body, "info": json.dumps(info)})


def _decode(data: Any) -> Any:
    """A base64 image (maybe a data: URL) as a PIL image; None when it is not one."""
    from PIL import Image

    if not isinstance(data, str):
        return None
    try:
        image = Image.open(io.BytesIO(base64.b64decode(data.partition(",")[2] if data.startswith("data:") else data)))
        image.load()
    except (OSError, ValueError, binascii.Error):
        return None
    return image


def _invalid(name: str, message: str) -> Response:
    """FastAPI's 422 for one bad body field."""
    return JSONResponse({"detail": [{"loc": ["body", name], "msg": message}]}, status_code=422)


def _error(message: str) -> Response:
    """A1111's api_error body for an exception raised inside a job (500)."""
    return JSONResponse({"error": "AssertionError", "detail": "", "body": "", "errors": message}, status_code=500)


def _check_strength(body: dict[str, Any]) -> Response | None:
    strength = body.get("denoising_strength", 0.75)
    if not isinstance(strength, int | float) or not 0 <= strength <= 1:
        return _invalid("denoising_strength", "must be a number from 0 to 1")
    return None


def main() -> None:
    """Serve the stand-in on a port, for trying Atelier's a1111 backend by hand."""
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7861)
    parser.add_argument("--api-auth", default=None, help="user:pass")
    parser.add_argument("--step-delay", type=float, default=0.1)
    args = parser.parse_args()
    auth = tuple(args.api_auth.split(":", 1)) if args.api_auth else None
    server = StandinA1111(auth=auth, behaviour=Behaviour(step_delay_s=args.step_delay))  # type: ignore[arg-type]
    uvicorn.run(server.app(), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
