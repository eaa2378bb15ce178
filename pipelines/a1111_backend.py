"""The remote image backend: an AUTOMATIC1111 WebUI started with ``--api``; no weights are loaded here.

A job is one ``POST /sdapi/v1/txt2img`` (hires fix through its ``enable_hr`` fields), or ``/sdapi/v1/img2img``
for img2img and inpaint (the init image and the mask as base64 PNG), ControlNet units in sd-webui-controlnet's
``alwayson_scripts.ControlNet.args`` (the WebUI must have the extension); A1111's field names, images back as
base64 PNG, the seeds in the ``info`` JSON. A job's checkpoint and VAE go in ``override_settings``, which A1111
restores afterwards, so other clients of the WebUI keep the checkpoint it has loaded. The call blocks until
the job is done, so it runs in a worker thread while this thread polls
``GET /sdapi/v1/progress`` for the step counts and the live preview. The job carries its own task id
(``force_task_id``), and progress reports ``current_task``: that is how a Stop knows whether the running job
is ours before it calls ``/sdapi/v1/interrupt``, which stops whatever job A1111 is running, anyone's.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from contracts import ControlNetUnit, ImageRequest
from pipelines.image_base import (
    BatchItem,
    BatchOutcome,
    GeneratedImage,
    JobCancelled,
    ProgressFn,
    StepUpdate,
    generate_one_by_one,
    register_image_backend,
)
from pipelines.loading import ModelUnavailable
from pipelines.remote_http import RemoteBackend, RemoteHTTP, error_detail, explain_status

log = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:7861"
# How often a waiting job looks at its stop event between progress polls.
STOP_POLL_S = 0.05
# The longest one progress poll may take: a hung poll must not hold up a Stop for the full timeout.
PROGRESS_TIMEOUT_S = 5.0
# A1111's api_error body is {error: the exception's type, detail, body, errors: the exception's text}.
DETAIL_KEYS = ("errors", "detail", "error")
# How A1111's HTTP error statuses are worded (see remote_http.explain_status); {during} names the call.
STATUS_WORDS: dict[int | str, str] = {
    401: "{where} refused the credentials during {during} (401){said}; set ATELIER_A1111_AUTH to the user:pass it "
         "was started with (--api-auth).",
    404: "{where} has no such API route or value during {during} (404){said}; start it with --api, and check the "
         "sampler name.",
    422: "{where} rejected the request during {during} (422){said}.",
    "5xx": "{where} failed during {during} ({status}){said}; see the WebUI's console.",
    "other": "{where} answered {status} during {during}{said}.",
}


class RemoteImageError(RuntimeError):
    """The A1111 server failed during a job; the message says what went wrong and how to fix it."""


def decode_image(data: str) -> Any:
    """A base64 image (optionally a data: URL, as some A1111 versions send previews) as a PIL image."""
    from PIL import Image

    if data.startswith("data:"):
        data = data.partition(",")[2]
    image = Image.open(io.BytesIO(base64.b64decode(data, validate=False)))
    image.load()
    return image


def encode_image(image: Any) -> str:
    """A PIL image as base64 PNG, the form A1111's init_images and mask take."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def controlnet_args(units: list[ControlNetUnit]) -> list[dict[str, Any]]:
    """The enabled units as sd-webui-controlnet's API takes them in ``alwayson_scripts.ControlNet.args``: its field
    names and values (modes by name), the picture as base64 PNG (none: the extension uses the img2img picture)."""
    args = []
    for unit in units:
        if not unit.enabled:
            continue
        values: dict[str, Any] = {**unit.model_dump(), "enabled": True}  # the extension's default is False
        if unit.image is not None:
            values["image"] = encode_image(unit.image)
        args.append(values)
    return args


def _parse_auth(auth: str | None) -> tuple[str, str] | None:
    """'user:pass' (A1111's --api-auth) as a pair; None when empty."""
    if not auth:
        return None
    user, sep, password = auth.partition(":")
    if not sep:
        raise ValueError("the A1111 credentials must be user:pass, as given to --api-auth")
    return user, password


def route(req: ImageRequest) -> str:
    """The A1111 route of a request's mode: img2img and inpaint are both /sdapi/v1/img2img (inpaint adds a mask)."""
    return "sdapi/v1/txt2img" if req.mode == "txt2img" else "sdapi/v1/img2img"


class _Job:
    """One txt2img or img2img call running in a worker thread, and what this thread learns about it."""

    def __init__(self, backend: A1111Backend, route: str, payload: dict[str, Any]) -> None:
        self.backend = backend
        self.route = route
        self.payload = payload
        self.task_id: str = payload["force_task_id"]
        self.done = threading.Event()
        self.response: httpx.Response | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._post, name="atelier-a1111-job", daemon=True)

    def _post(self) -> None:
        try:
            self.response = self.backend.client().post(self.route, json=self.payload,
                                                       timeout=self.backend.job_timeout)
        except BaseException as err:  # handed to the waiting thread, which raises it
            self.error = err
        finally:
            self.done.set()


@register_image_backend("a1111")
class A1111Backend(RemoteBackend):
    """Stable Diffusion on an AUTOMATIC1111 WebUI (``--api``), another process or machine."""

    name = "a1111"

    def __init__(
        self,
        url: str = DEFAULT_URL,
        auth: str | None = None,
        model: str | None = None,
        timeout_s: float = 30.0,
        job_timeout_s: float = 1800.0,
        poll_s: float = 0.5,
    ) -> None:
        self.http = RemoteHTTP(url, "the AUTOMATIC1111 server", timeout_s, auth=_parse_auth(auth))
        self._expected_model = model or None
        self.model = ""
        self.revision = ""  # the checkpoint's hash, when A1111 reports it
        self.model_hash = ""  # A1111's short "Model hash" of the checkpoint that ran last, for the PNG
        self.timeout_s = timeout_s
        self.job_timeout = self.http.timeout(job_timeout_s)
        self.poll_s = poll_s
        self.notes: list[str] = []

    @property
    def url(self) -> str:
        """The WebUI's address, without a trailing slash."""
        return self.http.url

    @property
    def model_name(self) -> str:
        """The checkpoint A1111 has loaded, as written into PNG metadata and history."""
        return self.model or self._expected_model or f"AUTOMATIC1111 at {self.url}"

    def explain_status(self, response: httpx.Response, during: str) -> str:
        """A clear message for an HTTP error status from A1111, with its own words on the error."""
        return explain_status(STATUS_WORDS, response.status_code, error_detail(response, DETAIL_KEYS),
                              where=self.http.where, during=during)

    # 1. Load --------------------------------------------------------------------------------------
    def load(self, report: Callable[[str], None]) -> None:
        """Check that the server answers with its API, and read the checkpoint it has loaded."""
        report(f"connecting to AUTOMATIC1111 at {self.url}")
        response = self.http.check(
            "sdapi/v1/options", still="starting",
            how_to_start="Start it with `./webui.sh --api --nowebui` (add --listen to reach it from another machine), "
                         "or point ATELIER_A1111_URL at it.")
        if response.status_code == 404:
            raise ModelUnavailable(
                f"The server at {self.url} has no A1111 API (404 on /sdapi/v1/options): start the WebUI with --api."
            )
        if response.status_code != 200:
            raise ModelUnavailable(self.explain_status(response, "the check"))
        try:
            options = response.json()
            checkpoint = str(options["sd_model_checkpoint"] or "")
        except (ValueError, KeyError, TypeError) as err:
            raise ModelUnavailable(
                f"The server at {self.url} answered /sdapi/v1/options without sd_model_checkpoint "
                f"({type(err).__name__}); is ATELIER_A1111_URL an AUTOMATIC1111 WebUI?"
            ) from err
        if not checkpoint:
            raise ModelUnavailable(f"The AUTOMATIC1111 server at {self.url} has no checkpoint loaded; load one.")
        if self._expected_model and self._expected_model not in checkpoint:
            # Switching the checkpoint would change it for every client of the WebUI: say so instead.
            raise ModelUnavailable(
                f"The AUTOMATIC1111 server at {self.url} has {checkpoint!r} loaded, not {self._expected_model!r}. "
                "Switch the checkpoint in the WebUI, or unset ATELIER_IMAGE_MODEL to use whatever it has loaded."
            )
        self.model = checkpoint
        self.revision = str(options.get("sd_checkpoint_hash") or "")
        self.model_hash = self.revision[:10]
        report(f"{checkpoint} is loaded on AUTOMATIC1111 at {self.url}")

    # 2. Generate ----------------------------------------------------------------------------------
    def payload(self, req: ImageRequest, seeds: list[int]) -> dict[str, Any]:
        """The request body: A1111's field names, one image per iteration so seeds go seed, seed+1, ..."""
        body = self._common_payload(req, seeds)
        overrides = {}
        if req.model:
            overrides["sd_model_checkpoint"] = req.model
        if req.vae:
            overrides["sd_vae"] = req.vae
        if overrides:
            # A1111 restores its own checkpoint after the job (override_settings_restore_afterwards defaults true).
            body["override_settings"] = overrides
        if req.refiner_checkpoint:
            body.update(refiner_checkpoint=req.refiner_checkpoint, refiner_switch_at=req.refiner_switch_at)
        if units := controlnet_args(req.controlnet):
            body["alwayson_scripts"] = {"ControlNet": {"args": units}}
        if req.mode == "txt2img":
            if req.enable_hr:
                body.update(enable_hr=True, hr_scale=req.hr_scale, hr_upscaler=req.hr_upscaler,
                            hr_second_pass_steps=req.hr_second_pass_steps,
                            denoising_strength=req.denoising_strength)
            return body
        body.update(init_images=[encode_image(req.init_image)], denoising_strength=req.denoising_strength,
                    resize_mode=req.resize_mode)
        if req.mode == "inpaint":
            body.update(mask=encode_image(req.mask), mask_blur=req.mask_blur, inpainting_fill=req.inpainting_fill,
                        inpaint_full_res=req.inpaint_full_res,
                        inpaint_full_res_padding=req.inpaint_full_res_padding,
                        inpainting_mask_invert=req.inpainting_mask_invert)
        return body

    @staticmethod
    def _common_payload(req: ImageRequest, seeds: list[int]) -> dict[str, Any]:
        """The fields txt2img and img2img share."""
        return {
            "prompt": req.prompt,
            "negative_prompt": req.negative_prompt,
            "steps": req.steps,
            "cfg_scale": req.cfg_scale,
            "width": req.width,
            "height": req.height,
            "seed": seeds[0],
            # Our sampler names are A1111's; 1.9+ splits a " Karras" suffix into its scheduler field itself.
            "sampler_name": req.sampler,
            "batch_size": 1,
            "n_iter": len(seeds),
            "send_images": True,
            "save_images": False,  # Atelier writes the files and history itself
            "do_not_save_samples": True,
            "do_not_save_grid": True,  # else a multi-image result starts with a grid image
            "force_task_id": f"task(atelier-{uuid.uuid4().hex})",
        }

    def generate_batch(self, items: list[BatchItem]) -> list[BatchOutcome]:
        """A1111 runs one request at a time and cannot mix prompts in one call: run the members one by one."""
        return generate_one_by_one(self, items)

    def generate(
        self, req: ImageRequest, seeds: list[int], on_step: ProgressFn, stop: threading.Event
    ) -> list[GeneratedImage]:
        """Run the job on A1111, reporting steps and previews; raise JobCancelled once stop is set."""
        if not self.model:
            raise RuntimeError("the AUTOMATIC1111 server has not been checked yet: call load() first")
        if stop.is_set():
            raise JobCancelled()
        job = _Job(self, route(req), self.payload(req, seeds))
        job.thread.start()
        last: tuple[int, int] | None = None
        last_image: str | None = None
        next_poll = time.monotonic() + min(self.poll_s, 0.2)  # the first look comes soon: short jobs show steps
        while not job.done.wait(STOP_POLL_S):
            if stop.is_set():
                self._cancel(job)
                raise JobCancelled()
            if time.monotonic() < next_poll:
                continue
            next_poll = time.monotonic() + self.poll_s
            progress = self._progress()
            if progress is None or not self._is_ours(progress, job):
                continue  # queued behind another client's job, or progress unavailable: nothing to show
            update, image = self._step_update(progress, req, len(seeds), last_image)
            if update is not None and ((update.step, update.total) != last or update.preview is not None):
                last, last_image = (update.step, update.total), image or last_image
                on_step(update)
        if stop.is_set():  # a Stop that came as the job finished still wins, as for local jobs
            raise JobCancelled()
        images = self._result(job, seeds)
        hires = req.hr_second_pass_steps or req.steps if req.mode == "txt2img" and req.enable_hr else 0
        per_image = req.steps + hires
        on_step(StepUpdate(step=per_image * len(seeds), total=per_image * len(seeds), image_index=len(seeds) - 1))
        return images

    def _progress(self) -> dict[str, Any] | None:
        """One progress poll; None when it fails (progress is best effort, the job itself decides the outcome)."""
        try:
            response = self.client().get("sdapi/v1/progress", params={"skip_current_image": "false"},
                                         timeout=min(self.timeout_s, PROGRESS_TIMEOUT_S))
            if response.status_code != 200:
                return None
            body = response.json()
        except (httpx.HTTPError, ValueError):
            log.debug("A1111 progress poll failed", exc_info=True)
            return None
        return body if isinstance(body, dict) else None

    @staticmethod
    def _is_ours(progress: dict[str, Any], job: _Job) -> bool:
        """Whether the job A1111 is running now is this one."""
        if "current_task" in progress:
            return progress.get("current_task") == job.task_id
        # A1111 before 1.6 does not say which task runs: any running job is taken for ours (documented).
        state = progress.get("state") or {}
        return bool(state.get("job_count")) and not job.done.is_set()

    def _step_update(
        self, progress: dict[str, Any], req: ImageRequest, count: int, last_image: str | None
    ) -> tuple[StepUpdate | None, str | None]:
        """The StepUpdate for a progress answer (None if it shows no step yet) and the preview it carried."""
        state = progress.get("state") or {}
        try:
            per_image = int(state.get("sampling_steps") or req.steps)
            step = int(state.get("sampling_step") or 0)
            index = int(state.get("job_no") or 0)
        except (TypeError, ValueError):
            return None, None
        if req.mode == "txt2img" and req.enable_hr:
            done, per_image, index = self._hires_steps(req, per_image, step, index, count)
        else:
            index = min(max(index, 0), count - 1)
            done = index * per_image + min(step, per_image)
        if done <= 0:
            return None, None
        preview = None
        image = progress.get("current_image")
        if isinstance(image, str) and image and image != last_image:
            try:
                preview = decode_image(image)
            except (OSError, ValueError, binascii.Error):
                log.debug("A1111 sent a preview that is not an image", exc_info=True)
        return StepUpdate(step=done, total=per_image * count, image_index=index, preview=preview), image

    @staticmethod
    def _hires_steps(req: ImageRequest, pass_steps: int, step: int, job_no: int, count: int) -> tuple[int, int, int]:
        """(steps done, steps per image, image index) of a hires job: base pass, then the hires pass."""
        # A1111 counts the hires pass as a job of its own (job_count doubled, job_no counts passes), and the
        # hires pass may run fewer steps than asked (denoising strength): scale it onto the steps asked for.
        first, second = req.steps, req.hr_second_pass_steps or req.steps
        index, in_hires = divmod(max(job_no, 0), 2)
        index = min(index, count - 1)
        fraction = min(step, pass_steps) / max(pass_steps, 1)
        within = first + round(fraction * second) if in_hires else round(fraction * first)
        return index * (first + second) + within, first + second, index

    def _cancel(self, job: _Job) -> None:
        """Interrupt the job if it is running now; if it is still queued, interrupt it once it starts."""
        progress = self._progress()
        if progress is not None and self._is_ours(progress, job):
            self._interrupt()
            return
        if job.done.is_set():
            return

        def wait_and_interrupt() -> None:
            # A queued job cannot be taken off A1111's queue: stop it the moment it starts, never anyone else's.
            while not job.done.wait(self.poll_s):
                progress = self._progress()
                if progress is not None and self._is_ours(progress, job):
                    self._interrupt()
                    return

        threading.Thread(target=wait_and_interrupt, name="atelier-a1111-cancel", daemon=True).start()

    def _interrupt(self) -> None:
        try:
            self.client().post("sdapi/v1/interrupt")
        except httpx.HTTPError:
            log.warning("could not interrupt the AUTOMATIC1111 job at %s", self.url, exc_info=True)

    def _result(self, job: _Job, seeds: list[int]) -> list[GeneratedImage]:
        """Decode the finished txt2img answer into images with the seeds A1111 used."""
        job.thread.join()
        if job.error is not None:
            err = job.error
            if isinstance(err, httpx.TimeoutException) and not isinstance(err, httpx.ConnectTimeout):
                raise RemoteImageError(
                    f"the AUTOMATIC1111 server at {self.url} did not finish the job within "
                    f"{self.job_timeout.read:g} s; raise ATELIER_A1111_JOB_TIMEOUT_S or check the WebUI's console."
                ) from err
            if isinstance(err, httpx.HTTPError):
                raise RemoteImageError(self.http.unreachable(err)) from err
            raise err
        response = job.response
        assert response is not None  # set whenever error is not
        if response.status_code != 200:
            raise RemoteImageError(self.explain_status(response, "the job"))
        try:
            body = response.json()
            encoded = list(body["images"])
            info = body.get("info") or "{}"
            info = json.loads(info) if isinstance(info, str) else info
            used = [int(s) for s in (info.get("all_seeds") or [])] or seeds
            images = [decode_image(e) for e in encoded]
        except (ValueError, KeyError, TypeError, AttributeError, OSError, binascii.Error) as err:
            raise RemoteImageError(
                f"the AUTOMATIC1111 server at {self.url} sent an answer that is not TextToImageResponse "
                f"({type(err).__name__}: {str(err)[:120]})."
            ) from err
        if len(images) == len(used) + 1:
            images = images[1:]  # a grid came first after all (an older A1111 ignoring do_not_save_grid)
        if len(images) != len(used):
            raise RemoteImageError(
                f"the AUTOMATIC1111 server at {self.url} returned {len(images)} image(s) for {len(used)} seed(s)."
            )
        if isinstance(info, dict) and info.get("sd_model_name"):
            self._note_model(str(info["sd_model_name"]))
        if isinstance(info, dict) and info.get("sd_model_hash"):
            self.model_hash = str(info["sd_model_hash"])  # a job's override_settings may have run another one
        return [GeneratedImage(image=image.convert("RGB"), seed=seed) for image, seed in zip(images, used, strict=True)]

    def _note_model(self, name: str) -> None:
        """Follow a checkpoint switched in the WebUI, so the next files name the model that made them."""
        if name not in self.model:
            self.model = name
            self.revision = self.model_hash = ""

    def controlnet_models(self) -> list[str]:
        """The ControlNet models of the WebUI's sd-webui-controlnet (its /controlnet/model_list, without "None"), the
        names a unit sent there takes; ModelUnavailable saying why when the WebUI cannot list them."""
        try:
            response = self.client().get("controlnet/model_list")
        except httpx.HTTPError as err:
            raise ModelUnavailable(self.http.unreachable(err)) from err
        if response.status_code == 404:
            raise ModelUnavailable(f"the AUTOMATIC1111 server at {self.url} has no /controlnet/model_list: install "
                                   "the sd-webui-controlnet extension there to use ControlNet units.")
        if response.status_code != 200:
            raise ModelUnavailable(self.explain_status(response, "listing its ControlNet models"))
        try:
            names = response.json()["model_list"]
            return [str(name) for name in names if str(name) != "None"]
        except (ValueError, KeyError, TypeError) as err:
            raise ModelUnavailable(f"the AUTOMATIC1111 server at {self.url} answered /controlnet/model_list without "
                                   f"a model_list ({type(err).__name__}).") from err

    # 3. Memory (offload and unload: RemoteBackend) and health -------------------------------------
    def describe(self) -> dict[str, Any]:
        """Server, checkpoint and notes for the health page."""
        notes = [*self.notes,
                 "A1111's interrupt is global: Stop interrupts only while the running job is this one",
                 "live previews need 'Show live previews' enabled in the WebUI's settings"]
        return {"url": self.url, "model": self.model_name, "notes": notes}
