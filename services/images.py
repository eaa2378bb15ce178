"""Generate images: validate, run on the backend in a worker thread, store files and history."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.image_base import (
    ImageBackend,
    ImageLimits,
    ImageRequest,
    InvalidRequest,
    JobCancelled,
    StepUpdate,
    check_inputs,
    resolve_seed,
)
from services.batcher import ImageBatcher
from services.cache import ResultCache, cache_key
from services.jobs import FINAL_STATES, JobHandle
from services.models import ModelSlot, ModelUnavailableError
from storage.db import database
from storage.files import Parameters, write_png_atomic
from storage.models import ImageFile, ImageJob, utcnow

if TYPE_CHECKING:
    from PIL.Image import Image

log = logging.getLogger(__name__)

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

    @property
    def finished(self) -> bool:
        """True once the job reached a final state."""
        return self.status in FINAL_STATES


class ImageJobHandle(JobHandle[JobSnapshot]):
    """A running image job."""

    def __init__(self) -> None:
        super().__init__(JobSnapshot(version=0, status="waiting", message="Waiting for the image model…"))


class ImageService:
    """The image use cases: validate, generate (one job at a time), record everything."""

    def __init__(self, slot: ModelSlot[ImageBackend], images_dir: Path, limits: ImageLimits,
                 defaults: dict[str, Any] | None = None, cache: ResultCache | None = None,
                 max_batch_images: int = 1) -> None:
        self.slot = slot
        self.images_dir = images_dir
        self.limits = limits
        self.defaults = defaults or {}
        self.cache = cache or ResultCache(enabled=False)
        # One pipeline call at a time, whatever path (UI, API, bench) a job came from; jobs that wait together
        # and share a shape ride in the same call.
        self.batcher = ImageBatcher(max_batch_images)

    @property
    def concurrency(self) -> int:
        """Jobs the UI lets in at once: enough to fill the running batch and gather the next one; without
        batching one, so that waiting jobs wait in Gradio's queue, which shows each its place."""
        return 1 if self.batcher.max_images == 1 else max(4, 2 * self.batcher.max_images)

    # 1. Validation -------------------------------------------------------------------------------
    def field_errors(self, **params: Any) -> dict[str, str]:
        """{field: message} for bad values, including values of the wrong type."""
        try:
            req = ImageRequest(**params)
        except Exception as err:  # pydantic's ValidationError: wrong types
            from pydantic import ValidationError

            if not isinstance(err, ValidationError):
                raise
            return {str(e["loc"][0]): f"{e['loc'][0]}: {e['msg']}" for e in err.errors()}
        return check_inputs(req, self.limits)

    def validate(self, **params: Any) -> ImageRequest:
        """Build a request or raise InvalidRequest with one message per bad field."""
        errors = self.field_errors(**params)
        if errors:
            raise InvalidRequest(errors)
        return ImageRequest(**params)

    # 2. Running ----------------------------------------------------------------------------------
    def start(self, req: ImageRequest, user: str = "") -> ImageJobHandle:
        """Run the job in a worker thread and return its handle at once."""
        handle = ImageJobHandle()
        handle.start(self.run, req, user, handle, name="image-job")
        return handle

    def run(self, req: ImageRequest, user: str = "", handle: ImageJobHandle | None = None) -> JobSnapshot:
        """Run the job in this thread; the returned snapshot is final."""
        handle = handle or ImageJobHandle()
        try:
            self._run_job(req, user, handle, time.perf_counter())
        except Exception as err:  # never leave a watcher hanging, whatever went wrong
            log.exception("image job crashed")
            handle.update(status="failed", message=f"Failed: {err}", error=str(err))
        return handle.snapshot()

    def _run_job(self, req: ImageRequest, user: str, handle: ImageJobHandle, started: float) -> None:
        handle.update(status="loading", message=self.slot.status().message())
        try:
            with self.slot.use() as backend:
                self._generate(req, user, handle, backend, started)
        except ModelUnavailableError as err:
            job = self._create_job(req, user, self.slot.status().model, seed_used=None)
            self._finish(job, "failed", started, error=str(err))
            handle.update(status="failed", message=f"❌ {err}", error=str(err), job_id=job.id)

    def _generate(self, req: ImageRequest, user: str, handle: ImageJobHandle, backend: ImageBackend,
                  started: float) -> None:
        key = None
        if req.seed != -1:  # only a fixed seed makes a result repeatable, hence reusable
            key = cache_key("image", backend.model_name, getattr(backend, "revision", ""), req.model_dump())
            if (hit := self.cache.find_image_job(user, key)) is not None and self._reuse(hit, req, user, handle,
                                                                                        started):
                return
        seeds = req.seeds(resolve_seed(req.seed))
        job = self._create_job(req, user, backend.model_name, seed_used=seeds[0], cache_key=key)
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

        try:
            if handle.stop_event.is_set():
                raise JobCancelled()
            images = self.batcher.run(backend, user, req, seeds, on_step, handle.stop_event)
        except JobCancelled:
            self._finish(job, "cancelled", started)
            handle.update(status="cancelled", message=f"Job {job.id}: stopped.", info=self._info(job, seeds, []))
            return
        except Exception as err:
            log.exception("image job %s failed", job.id)
            self._fail(job, handle, started, f"{type(err).__name__}: {err}")
            return
        try:
            files = self._store(job, started, lambda out: self._write_files(job, req, backend.model_name, images,
                                                                            out))
        except Exception as err:  # disk full, an unwritable images folder, a failed database write
            log.exception("image job %s could not be saved", job.id)
            self._fail(job, handle, started, f"could not save the images ({type(err).__name__}: {err})")
            return
        if key is not None:
            self.cache.trim(user)
        info = self._info(job, seeds, files)
        handle.update(status="done", files=[self.images_dir / f.path for f in files], info=info,
                      message=f"Job {job.id}: done in {info['duration_s']:.1f} s (seed {seeds[0]})")

    def _reuse(self, hit: ImageJob, req: ImageRequest, user: str, handle: ImageJobHandle, started: float) -> bool:
        """Answer from an identical earlier job: new history row, same bytes, no pipeline call."""
        sources = [(f, self.images_dir / f.path) for f in hit.files.order_by(ImageFile.index)]
        if not sources or not all(path.is_file() for _, path in sources):
            return False  # its files were deleted: compute again
        job = self._create_job(req, user, hit.model, seed_used=hit.seed_used, cached=True)

        def link(written: list[dict[str, Any]]) -> None:
            for f, src in sources:
                rel = Path(dt.date.today().isoformat()) / f"{job.id:06d}-{f.index}-{f.seed}.png"
                _link_or_copy(src, self.images_dir / rel)
                written.append({"index": f.index, "path": rel.as_posix(), "seed": f.seed, "width": f.width,
                                "height": f.height})

        try:
            files = self._store(job, started, link)
        except Exception as err:
            log.exception("image job %s could not be saved", job.id)
            self._fail(job, handle, started, f"could not save the images ({type(err).__name__}: {err})")
            return True  # answered (with the failure): computing again would hit the same disk
        seeds = [f.seed for f, _ in sources]
        info = self._info(job, seeds, files)
        handle.update(status="done", job_id=job.id, files=[self.images_dir / f.path for f in files], info=info,
                      message=f"Job {job.id}: from cache (same settings as job {hit.id}), seed {seeds[0]}")
        return True

    def _create_job(self, req: ImageRequest, user: str, model: str, seed_used: int | None,
                    cache_key: str | None = None, cached: bool = False) -> ImageJob:
        with database.atomic():
            return ImageJob.create(
                user=user, backend=self.slot.status().backend, model=model, seed_used=seed_used,
                extra=json.dumps(self.slot.status().details, default=str), cache_key=cache_key, cached=cached,
                # The request's own `model` (the checkpoint asked for, "" = default) must not clash with the
                # model that ran, passed above; the new mode fields have no columns yet and peewee ignores them.
                **req.model_dump(exclude={"model"}),
            )

    def _write_files(self, job: ImageJob, req: ImageRequest, model: str, images: list[Any],
                     written: list[dict[str, Any]]) -> None:
        """Write each image as a PNG, adding its file row to `written` once the file exists."""
        day = dt.date.today().isoformat()
        for index, generated in enumerate(images):
            rel = Path(day) / f"{job.id:06d}-{index}-{generated.seed}.png"
            params = Parameters(prompt=req.prompt, negative_prompt=req.negative_prompt, steps=req.steps,
                                sampler=req.sampler, cfg_scale=req.cfg_scale, seed=generated.seed,
                                width=generated.image.width, height=generated.image.height, model=model)
            write_png_atomic(generated.image, self.images_dir / rel, params)
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
                (self.images_dir / row["path"]).unlink(missing_ok=True)
            raise

    def _fail(self, job: ImageJob, handle: ImageJobHandle, started: float, reason: str) -> None:
        """Record the job as failed and tell its watcher why."""
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
    def recover(self) -> int:
        """Mark jobs left 'running' by a crash as failed, and drop half-written temp files."""
        for tmp in self.images_dir.rglob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        with database.atomic():
            return (
                ImageJob.update(status="failed", error="interrupted: the server stopped while this job ran",
                                finished_at=utcnow())
                .where(ImageJob.status == "running")
                .execute()
            )


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


def _link_or_copy(src: Path, dest: Path) -> None:
    """Give `dest` the bytes of `src`: a hard link where the filesystem allows, else an atomic copy."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        tmp = dest.with_name(f".{dest.name}.tmp")
        try:
            shutil.copyfile(src, tmp)
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
