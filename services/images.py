"""Generate images: validate, run on the backend in a worker thread, store files and history."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image as PILImage

from contracts import (
    INPAINTING_FILLS,
    ImageLimits,
    ImageRequest,
    InvalidRequest,
    check_inputs,
    control_infotext,
    excerpt,
    resolve_seed,
)
from pipelines.checkpoints import FAMILY_LABELS
from pipelines.image_base import ImageBackend, JobCancelled, StepUpdate
from pipelines.loading import ModelUnavailable, model_revision
from pipelines.messages import hide_paths
from services import controlnet, log_context, metrics, uploads
from services.batcher import ImageBatcher, Place
from services.cache import ResultCache, cache_key
from services.jobs import FINAL_STATES, JobHandle
from services.model_slots import ModelSlot, ModelUnavailableError
from services.request_log import RequestLog, RequestRecord
from services.running import RunningJobs
from storage.blobs import BlobStore, LocalStore
from storage.connections import database
from storage.files import Parameters, image_name
from storage.models import ImageFile, ImageJob, input_path, utcnow

if TYPE_CHECKING:
    from PIL.Image import Image

log = logging.getLogger(__name__)

INPUT_IMAGES = ("init_image", "mask")


@dataclass
class JobSnapshot:
    """What a watcher sees of a job at one moment."""

    version: int
    status: str  # waiting | loading | running | done | cancelled | failed
    message: str
    step: int = 0
    total: int = 0
    preview: Image | None = None
    job_id: int | None = None
    files: list[Path] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    # While the job waits in the batcher's line (ATELIER_MAX_BATCH_IMAGES > 1): jobs ahead of it, jobs waiting in
    # all, and the estimated seconds until it starts (None: not yet known). `place` is None when it is not in line.
    place: int | None = None
    waiting: int = 0
    eta_s: float | None = None

    @property
    def finished(self) -> bool:
        """True once the job reached a final state."""
        return self.status in FINAL_STATES


def describe_place(place: Place) -> str:
    """'next in line' or 'N jobs ahead', with the estimated wait when known."""
    where = "next in line" if place.ahead == 0 else f"{place.ahead} job{'s' if place.ahead > 1 else ''} ahead"
    return where + (f" · about {max(1, round(place.eta_s))} s" if place.eta_s is not None else "")


class ImageJobHandle(JobHandle[JobSnapshot]):
    """A running image job."""

    def __init__(self) -> None:
        super().__init__(JobSnapshot(version=0, status="waiting", message="Waiting for the image model…"))


class ImageService:
    """The image use cases: validate, generate (one job at a time), record everything."""

    def __init__(self, slot: ModelSlot[ImageBackend], images_dir: Path, limits: ImageLimits,
                 defaults: dict[str, Any] | None = None, cache: ResultCache | None = None,
                 max_batch_images: int = 1, store: BlobStore | None = None,
                 upload_limits: uploads.UploadLimits | None = None, catalog: Any | None = None,
                 remote_names: bool = False, replica: str = "", request_log: RequestLog | None = None,
                 running: RunningJobs | None = None) -> None:
        self.slot = slot
        self.request_log = request_log  # each finished job's row (None: metrics only)
        self.images_dir = images_dir
        self.store = store or LocalStore(images_dir)
        self.limits = limits
        self.defaults = defaults or {}
        self.cache = cache or ResultCache(enabled=False)
        self.upload_limits = upload_limits or uploads.DEFAULT_LIMITS
        # services.catalog.Catalog: the names a request may use (checkpoints, VAEs, LoRAs, upscalers) and the
        # Model hash and Lora hashes for the PNG. None (tests, scripts): no names to check, no hashes to write.
        self.catalog = catalog
        # A remote backend (AUTOMATIC1111) has checkpoints, VAEs, LoRAs and upscalers of its own, which only it
        # knows: their names go to it unchecked, and it refuses an unknown one with its own message.
        self.remote_names = remote_names
        self.replica = replica  # this process's name among replicas, recorded on each job it runs
        # One pipeline call at a time, whatever path (UI, API, bench) a job came from; jobs that wait together
        # and share a shape ride in the same call.
        self.batcher = ImageBatcher(max_batch_images)
        # Every job this process runs, by user: its owner sees and stops it from any way in (services/running.py).
        self.running = running or RunningJobs()

    @property
    def concurrency(self) -> int:
        """Jobs the UI lets in at once: enough to fill the running batch and gather the next one; without
        batching one, so that waiting jobs wait in Gradio's queue, which shows each its place."""
        return 1 if self.batcher.max_images == 1 else max(4, 2 * self.batcher.max_images)

    # 1. Validation -------------------------------------------------------------------------------
    def field_errors(self, **params: Any) -> dict[str, str]:
        """{field: message} for bad values, including values of the wrong type and unreadable images."""
        return self.check(**params)[1]

    def validate(self, **params: Any) -> ImageRequest:
        """Build a request or raise InvalidRequest with one message per bad field (see check)."""
        req, errors = self.check(**params)
        if errors or req is None:
            raise InvalidRequest(errors)
        return req

    def check(self, **params: Any) -> tuple[ImageRequest | None, dict[str, str]]:
        """The checked request, or None and {field: message} for every bad value. init_image and mask may be an
        uploaded file (a Path the caller vouches for: Gradio's upload folder), an upload's bytes or PIL images: each
        is read and decoded here, once, within the upload limits (services/uploads.py)."""
        params, errors = self._read_images(params)
        local = self.catalog is not None and not self.remote_names
        models = self.catalog.controlnets() if local and params.get("controlnet") else None
        params["controlnet"], unit_errors = controlnet.read_units(params.get("controlnet"), models,
                                                                  self.upload_limits)
        errors |= unit_errors
        try:
            req = ImageRequest(**params)
        except Exception as err:  # pydantic's ValidationError: wrong types
            from pydantic import ValidationError

            if not isinstance(err, ValidationError):
                raise
            return None, {str(e["loc"][0]): f"{e['loc'][0]}: {e['msg']}" for e in err.errors()} | errors
        upscalers = None if self.remote_names else self.catalog.upscalers() if self.catalog is not None else ()
        errors = check_inputs(req, self.limits, upscalers) | errors  # an unreadable image's own message wins
        if self.catalog is not None and not self.remote_names:
            # Unknown LoRAs in the prompt, checkpoint or VAE names: each message lists what there is.
            errors = self.catalog.field_errors(prompt=req.prompt, model=req.model, vae=req.vae) | errors
            if req.controlnet:
                errors = controlnet.check_family(req.controlnet, models or {}, self.catalog.family(req.model)) | errors
            errors = self._refiner_errors(req) | errors
        if req.controlnet:  # a long thin picture at a high processor resolution: gigabytes for one map
            sizes = [(req.width, req.height), *([req.hr_size()] if req.enable_hr and req.mode == "txt2img" else [])]
            errors = controlnet.map_size_errors(req.controlnet, sizes, req.init_image) | errors
        return (None if errors else req), errors

    def controlnet_models(self) -> list[str]:
        """The ControlNet models a unit may name: those of <data>/controlnet, or on a remote WebUI its extension's
        (pipelines/a1111_backend.py); ModelUnavailableError saying why when the WebUI cannot list them."""
        if not self.remote_names:
            return list(self.catalog.controlnets()) if self.catalog is not None else []
        backend: Any = self.slot.backend
        if not hasattr(backend, "controlnet_models"):  # a remote backend that runs no ControlNet units
            return []
        try:
            return list(backend.controlnet_models())
        except ModelUnavailable as err:
            raise ModelUnavailableError(str(err)) from None

    def _refiner_identity(self, req: ImageRequest) -> dict[str, str]:
        """For the result cache, which files the refiner is (its name alone would outlive a replaced file); {} without
        one, so other jobs keep their keys."""
        if not req.refiner_checkpoint or self.catalog is None or self.remote_names:
            return {}
        try:
            path = self.catalog.resolve_model(req.refiner_checkpoint)
        except ValueError:
            return {}
        # A file's SHA-256 is computed once and cached (pipelines/hashes.py); a folder's fingerprint is its stats.
        return {"refiner": model_revision(str(path)) if path.is_dir() else self.catalog.model_sha256(
            req.refiner_checkpoint)}

    def _refiner_errors(self, req: ImageRequest) -> dict[str, str]:
        """The refiner must be a checkpoint here, and it and the base SDXL (the hand-off is SDXL's)."""
        if not req.refiner_checkpoint or self.catalog is None:
            return {}
        try:
            self.catalog.resolve_model(req.refiner_checkpoint)
        except ValueError as err:
            return {"refiner_checkpoint": f"refiner_checkpoint: {err}"}
        for key, name in (("refiner_checkpoint", req.refiner_checkpoint), ("model", req.model)):
            family = self.catalog.family(name)
            if family is not None and family != "sdxl":
                what = "the refiner" if key == "refiner_checkpoint" else "the checkpoint"
                return {key: f"{key}: {what} {excerpt(name or 'default')} is {FAMILY_LABELS.get(family, family)}; "
                             "the refiner hands SDXL latents over, so the checkpoint and the refiner must both be "
                             "SDXL."}
        return {}

    def _read_images(self, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        """Read and decode uploaded files and bytes, and bring PIL images to the request's modes (RGB; L for the mask),
        within the upload pixel limit however they came."""
        params, errors = dict(params), {}
        limits = self.upload_limits
        for name in INPUT_IMAGES:
            value = params.get(name)
            try:
                if isinstance(value, bytes | bytearray | memoryview | Path):
                    data = value if isinstance(value, Path) else bytes(value)
                    params[name] = uploads.read_image(data, name, limits, mask=name == "mask")
                elif isinstance(value, PILImage.Image):
                    if value.width * value.height > limits.max_pixels:
                        raise InvalidRequest({name: f"{name}: the image is {value.width}x{value.height} "
                                                    f"({value.width * value.height:,} pixels); at most "
                                                    f"{limits.max_pixels:,} pixels are allowed."})
                    params[name] = uploads.to_mask(value, name) if name == "mask" else uploads.to_rgb(value, name)
            except InvalidRequest as err:
                errors.update(err.errors)
                params[name] = None
        return params, errors

    # 2. Running ----------------------------------------------------------------------------------
    def start(self, req: ImageRequest, user: str = "", source: str = "web", ref: str | None = None) -> ImageJobHandle:
        """Run the job in a worker thread and return its handle at once; the job is listed among the user's running
        jobs (on the quota reservation `ref` when an API took one), `source` saying how it came in."""
        handle = ImageJobHandle()
        self.running.add(handle, user, "image", source, req.prompt, ref)
        handle.start(self.run, req, user, handle, name="image-job")
        return handle

    def run(self, req: ImageRequest, user: str = "", handle: ImageJobHandle | None = None) -> JobSnapshot:
        """Run the job in this thread; the returned snapshot is final."""
        handle = handle or ImageJobHandle()
        with log_context.bound(job_id=None):  # the job's id, once it has one, is on its log lines until it ends
            try:
                self._run_job(req, user, handle, time.perf_counter())
            except Exception as err:  # never leave a watcher hanging, whatever went wrong
                log.exception("image job crashed")
                reason = hide_paths(str(err))
                handle.update(status="failed", message=f"Failed: {reason}", error=reason)
            self._observe(user, handle)
        return handle.snapshot()

    def _observe(self, user: str, handle: ImageJobHandle) -> None:
        """The finished job's metrics and request log row."""
        snap, meter = handle.snapshot(), handle.meter
        model = str(snap.info.get("model") or self.slot.status().model)
        status = snap.status if snap.status in FINAL_STATES else "failed"
        images = len(snap.files) if status == "done" else 0
        duration = meter.elapsed()
        metrics.job_done("image", status, model, duration, meter.queue_wait_s, meter.device_s)
        if not snap.info.get("cached"):  # produced by the model: a cache hit's images were made before
            metrics.produced_images(model, images)
        if self.request_log is not None:
            self.request_log.record(RequestRecord.of_job(
                "image", status, meter, user=user, reason=snap.error, model=model, images=images,
                replica=self.replica, job_id=snap.job_id))

    def _run_job(self, req: ImageRequest, user: str, handle: ImageJobHandle, started: float) -> None:
        handle.update(status="loading", message=self.slot.status().message())
        try:
            # The request's checkpoint and VAE ("" = the default): the slot switches when no job uses the current one.
            with self.slot.use(req.model, req.vae) as backend:
                self._generate(req, user, handle, backend, started)
        except ModelUnavailableError as err:
            job = self._create_job(req, user, self.slot.status().model, seed_used=None)
            # Kept even so: the job can be reopened and tried again.
            self._keep_inputs(req, req.image_digests())
            self._finish(job, "failed", started, error=str(err))
            handle.update(status="failed", message=f"❌ {err}", error=str(err), job_id=job.id)

    def _generate(self, req: ImageRequest, user: str, handle: ImageJobHandle, backend: ImageBackend,
                  started: float) -> None:
        key = None
        digests = req.image_digests()  # once: hashing an image means encoding it as PNG
        if req.seed != -1:  # only a fixed seed makes a result repeatable, hence reusable
            key = self.cache_key(req, backend, {**digests, **self._refiner_identity(req)})
            if (hit := self.cache.find_image_job(user, key)) is not None and self._reuse(hit, req, user, handle,
                                                                                        started, digests):
                return
        seeds = req.seeds(resolve_seed(req.seed))
        job = self._create_job(req, user, backend.model_name, seed_used=seeds[0], cache_key=key, digests=digests)
        if problem := self._keep_inputs(req, digests):
            self._fail(job, handle, started, problem)
            return
        handle.update(status="running", job_id=job.id, info=self._info(job, seeds, []),
                      message=f"Job {job.id}: waiting for the image model (seed {seeds[0]})")

        def on_step(update: StepUpdate) -> None:
            elapsed = time.perf_counter() - started
            changes: dict[str, Any] = {
                "step": update.step,
                "total": update.total,
                "message": f"Job {job.id}: step {update.step}/{update.total} · {elapsed:.1f} s",
            }
            if update.preview is not None:
                changes["preview"] = update.preview
            handle.update(**changes)

        def on_place(place: Place | None) -> None:
            if place is None:
                handle.update(place=None, eta_s=None, message=f"Job {job.id}: starting (seed {seeds[0]})")
            else:
                handle.update(place=place.ahead, waiting=place.waiting, eta_s=place.eta_s,
                              message=f"Job {job.id}: in line, {describe_place(place)}")

        try:
            if handle.stop_event.is_set():
                raise JobCancelled()
            images = self.batcher.run(backend, user, req, seeds, on_step, handle.stop_event, on_place, handle.meter)
        except JobCancelled:
            self._finish(job, "cancelled", started)
            handle.update(status="cancelled", message=f"Job {job.id}: stopped.", info=self._info(job, seeds, []))
            return
        except Exception as err:
            log.exception("image job %s failed", job.id)
            self._fail(job, handle, started, f"{type(err).__name__}: {err}")
            return
        try:
            params = self._parameters(req, backend)
            files = self._store(job, started, lambda out: self._write_files(job, params, images, out))
        except Exception as err:  # disk full, an unwritable images folder, a failed database write
            log.exception("image job %s could not be saved", job.id)
            self._fail(job, handle, started, f"could not save the images ({type(err).__name__}: {err})")
            return
        if key is not None:
            self.cache.trim(user)
        info = self._info(job, seeds, files)
        handle.update(status="done", files=[self.store.local_path(f.path) for f in files], info=info,
                      message=f"Job {job.id}: done in {info['duration_s']:.1f} s (seed {seeds[0]})")

    @staticmethod
    def cache_key(req: ImageRequest, backend: ImageBackend, digests: dict[str, str]) -> str:
        """What makes two jobs identical: the model that runs (and its revision), every setting of every mode (the
        checkpoint and VAE asked for too) and the input images by their digests."""
        return cache_key("image", backend.model_name, backend.revision, req.settings(), digests)

    def _reuse(self, hit: ImageJob, req: ImageRequest, user: str, handle: ImageJobHandle, started: float,
               digests: dict[str, str]) -> bool:
        """Answer from an identical earlier job: new history row, same bytes, no pipeline call."""
        sources = list(hit.files.order_by(ImageFile.index))
        if not sources or not all(self.store.exists(f.path) for f in sources):
            return False  # its files were deleted: compute again
        handle.meter.running()  # answered without the pipeline: no wait for a batch
        job = self._create_job(req, user, hit.model, seed_used=hit.seed_used, cached=True, digests=digests)
        if problem := self._keep_inputs(req, digests):
            self._fail(job, handle, started, problem)
            return True

        def link(written: list[dict[str, Any]]) -> None:
            for f in sources:
                rel = Path(dt.date.today().isoformat()) / image_name()
                self.store.copy(f.path, rel.as_posix())
                written.append({"index": f.index, "path": rel.as_posix(), "seed": f.seed, "width": f.width,
                                "height": f.height})

        try:
            files = self._store(job, started, link)
        except Exception as err:
            log.exception("image job %s could not be saved", job.id)
            self._fail(job, handle, started, f"could not save the images ({type(err).__name__}: {err})")
            return True  # answered (with the failure): computing again would hit the same disk
        seeds = [f.seed for f in sources]
        info = self._info(job, seeds, files)
        handle.update(status="done", job_id=job.id, files=[self.store.local_path(f.path) for f in files], info=info,
                      message=f"Job {job.id}: from cache (same settings as job {hit.id}), seed {seeds[0]}")
        return True

    def _create_job(self, req: ImageRequest, user: str, model: str, seed_used: int | None,
                    cache_key: str | None = None, cached: bool = False,
                    digests: dict[str, str] | None = None) -> ImageJob:
        settings = req.settings()
        # The request's `model` is the checkpoint asked for; the row's `model` is the one that ran (PNG's Model).
        settings["checkpoint"] = settings.pop("model")
        digests = req.image_digests() if digests is None else digests
        settings["controlnet"] = json.dumps([{**unit, "image": input_path(digests.get(f"controlnet.{i}.image", ""))}
                                             for i, unit in enumerate(settings["controlnet"])])
        with database.atomic():
            job = ImageJob.create(
                user=user, backend=self.slot.status().backend, model=model, seed_used=seed_used,
                extra=json.dumps(self.slot.status().details, default=str), cache_key=cache_key, cached=cached,
                replica=self.replica,
                init_image_sha=digests["init_image"], mask_sha=digests["mask"], **settings,
            )
        log_context.bind(job_id=job.id)
        return job

    def _keep_inputs(self, req: ImageRequest, digests: dict[str, str]) -> str:
        """Store the job's input images under inputs/<sha>.png (once per content); the reason when that failed."""
        try:
            pictures = [(getattr(req, name), digests[name]) for name in INPUT_IMAGES]
            pictures += [(u.image, digests.get(f"controlnet.{i}.image", "")) for i, u in enumerate(req.controlnet)]
            for image, sha in pictures:
                # In the image store (the folder, or S3), so that every replica can reopen the job.
                if image is not None and sha and not self.store.exists(input_path(sha)):
                    self.store.put_png(input_path(sha), image, None)
        except Exception as err:  # disk full, an unwritable images folder, an unreachable bucket
            log.exception("could not keep the input images")
            return f"could not save the input images ({type(err).__name__}: {err})"
        return ""

    def _parameters(self, req: ImageRequest, backend: ImageBackend) -> Parameters:
        """The job's PNG `parameters` (the seed is each image's own), with each mode's keys as A1111 writes them."""
        inpaint = req.mode == "inpaint"
        hires = req.enable_hr and req.mode == "txt2img"
        fill = INPAINTING_FILLS.get(req.inpainting_fill, "original")
        return Parameters(
            prompt=req.prompt, negative_prompt=req.negative_prompt, steps=req.steps, sampler=req.sampler,
            cfg_scale=req.cfg_scale, seed=0, width=req.width, height=req.height, model=backend.model_name,
            model_hash=self._model_hash(req, backend) or None, vae=req.vae or None,
            lora_hashes=self._lora_hashes(req) or None,
            denoising_strength=req.denoising_strength if req.mode != "txt2img" or hires else None,
            mask_mode="Inpaint not masked" if inpaint and req.inpainting_mask_invert else None,
            mask_blur=req.mask_blur if inpaint and req.mask_blur > 0 else None,
            inpaint_area="Only masked" if inpaint and req.inpaint_full_res else None,
            masked_area_padding=req.inpaint_full_res_padding if inpaint and req.inpaint_full_res else None,
            masked_content=fill if inpaint and fill != "original" else None,
            hires_upscale=req.hr_scale if hires else None,
            hires_steps=req.hr_second_pass_steps if hires and req.hr_second_pass_steps else None,
            hires_upscaler=req.hr_upscaler if hires else None,
            controlnet=control_infotext(req.controlnet) or None,
            refiner=self._refiner_title(req) or None,
            refiner_switch_at=req.refiner_switch_at if req.refiner_checkpoint else None,
        )

    def _refiner_title(self, req: ImageRequest) -> str:
        """A1111's `Refiner` value: the checkpoint's file stem and short hash, "name [hash]" ('' without one)."""
        name = req.refiner_checkpoint
        if not name or self.catalog is None or self.remote_names:
            return name
        try:
            short = str(self.catalog.model_hash(name))
            path = self.catalog.resolve_model(name)
        except Exception:  # metadata only: a file gone since validation must not cost the finished images
            log.warning("no Refiner hash for %r", name, exc_info=True)
            return name
        stem = path.stem if path.is_file() else path.name
        return f"{stem} [{short}]" if short else stem

    def _model_hash(self, req: ImageRequest, backend: ImageBackend) -> str:
        """A1111's Model hash of the checkpoint that ran: the backend's own when it tells (a single-file checkpoint
        it loaded), else the catalog's for the name asked for; '' for a diffusers folder or a remote model."""
        known = backend.model_hash
        if known or not req.model or self.catalog is None or self.remote_names:
            return known
        try:
            return str(self.catalog.model_hash(req.model))
        except Exception:  # metadata only: a file gone since validation must not cost the finished images
            log.warning("no Model hash for %r", req.model, exc_info=True)
            return ""

    def _lora_hashes(self, req: ImageRequest) -> str:
        """A1111's Lora hashes for the LoRAs the prompt names ('' without a catalog or LoRAs)."""
        if self.catalog is None or self.remote_names:  # a remote server's LoRAs are not files here
            return ""
        try:
            return str(self.catalog.lora_hashes(req.prompt))
        except Exception:  # as above: metadata only
            log.warning("no Lora hashes for %r", req.prompt, exc_info=True)
            return ""

    def _write_files(self, job: ImageJob, params: Parameters, images: list[Any],
                     written: list[dict[str, Any]]) -> None:
        """Write each image as a PNG, adding its file row to `written` once the file exists."""
        day = dt.date.today().isoformat()
        for index, generated in enumerate(images):
            rel = Path(day) / image_name()
            self.store.put_png(rel.as_posix(), generated.image, replace(params, seed=generated.seed))
            written.append({"index": index, "path": rel.as_posix(), "seed": generated.seed,
                            "width": generated.image.width, "height": generated.image.height})

    def _store(self, job: ImageJob, started: float,
               write: Callable[[list[dict[str, Any]]], None]) -> list[ImageFile]:
        """Write the files, then commit their rows with the 'done' status; if any step fails, remove the files
        written so far and raise, so that no file outlives its job and history never lists a partial job."""
        written: list[dict[str, Any]] = []
        try:
            write(written)
            return self._finish(job, "done", started, written=written)
        except BaseException:
            for row in written:
                try:
                    self.store.delete(row["path"])
                except Exception:  # an unreachable store: the orphan is never listed; the first error matters
                    log.warning("could not remove %s after a failed save", row["path"], exc_info=True)
            raise

    def _fail(self, job: ImageJob, handle: ImageJobHandle, started: float, reason: str) -> None:
        """Record the job as failed and tell its watcher why (no absolute path of this machine in the reason)."""
        reason = hide_paths(reason)
        self._finish(job, "failed", started, error=reason)
        handle.update(status="failed", message=f"Job {job.id} failed: {reason}", error=reason, job_id=job.id,
                      files=[])

    @staticmethod
    def _finish(job: ImageJob, status: str, started: float, error: str = "",
                written: list[dict[str, Any]] | None = None) -> list[ImageFile]:
        """Record the outcome; file rows and the final status commit together, after the files exist."""
        job.status = status
        job.error = error
        job.finished_at = utcnow()
        job.duration_s = round(time.perf_counter() - started, 3)
        with database.atomic():
            job.save()
            return [ImageFile.create(job=job, **row) for row in written or []]

    def _info(self, job: ImageJob, seeds: list[int], files: list[ImageFile]) -> dict[str, Any]:
        return {
            "job_id": job.id,
            "status": job.status,
            "seed": seeds[0] if seeds else None,
            "seeds": seeds,
            **job.settings_dict(),
            "files": [f.path for f in files],
        }

    # 3. Start-up housekeeping -------------------------------------------------------------------
    def recover(self, only_replica: str | None = None, files: bool = True) -> int:
        """Mark jobs left 'running' by a crash as failed (every replica's, or only `only_replica`'s while others
        run), and drop half-written temp files (`files`: at start only, never while this replica's jobs write)."""
        if files:
            self.store.recover()
        running = ImageJob.status == "running"
        if only_replica is not None:
            running &= ImageJob.replica == only_replica
        with database.atomic():
            return (
                ImageJob.update(status="failed", error="interrupted: the server stopped while this job ran",
                                finished_at=utcnow())
                .where(running)
                .execute()
            )


def running_replicas() -> set[str]:
    """The replicas recorded on image jobs still marked running."""
    return {job.replica for job in ImageJob.select(ImageJob.replica).where(ImageJob.status == "running").distinct()}


def run_and_collect(service: ImageService, req: ImageRequest,
                    on_snapshot: Callable[[JobSnapshot], None] | None = None) -> JobSnapshot:
    """Run a job synchronously, calling `on_snapshot` for each update (scripts, tests, benchmarks)."""
    handle = service.start(req)
    version = -1
    while True:
        snap = handle.wait(version, timeout=0.5)
        if snap.version != version:
            version = snap.version
            if on_snapshot:
                on_snapshot(snap)
        if snap.finished:
            if handle.thread:
                handle.thread.join()
            return snap

