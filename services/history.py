"""History queries: list, fetch and delete image jobs, always scoped to a user (None: an admin, every user)."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from storage.blobs import BlobStore, LocalStore
from storage.connections import database
from storage.models import ImageFile, ImageJob, input_path, owned_by

log = logging.getLogger(__name__)

MAX_PAGE = 200
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def job_to_dict(job: ImageJob) -> dict[str, Any]:
    """A job and its files as JSON-ready data."""
    # Files are named "file" (relative to the images dir), not "path": gradio_client downloads every
    # dict with a "path" key as if it were a file it was sent.
    files = sorted(job.files, key=lambda f: f.index)
    return {
        "job_id": job.id,
        "created_at": job.created_at.isoformat() if job.created_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "status": job.status,
        "error": job.error or None,
        "seed": job.seed,
        "seed_used": job.seed_used,
        "backend": job.backend,
        **job.settings_dict(),
        "files": [{"id": f.id, "file": f.path, "seed": f.seed, "width": f.width, "height": f.height} for f in files],
    }


class HistoryService:
    """Reads and deletes a user's image jobs."""

    def __init__(self, images_dir: Path, store: BlobStore | None = None) -> None:
        self.images_dir = images_dir
        self.store = store or LocalStore(images_dir)

    def list_jobs(self, user: str | None = "", limit: int = 20, before: int | None = None) -> dict[str, Any]:
        """Newest first; `before` is a job id from the previous page's `next_before`."""
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE}, got {limit}")
        query = ImageJob.select().where(owned_by(ImageJob.user, user))
        if before is not None:
            query = query.where(ImageJob.id < before)
        jobs = list(query.order_by(ImageJob.id.desc()).limit(limit + 1))
        page, more = jobs[:limit], len(jobs) > limit
        return {
            "jobs": [job_to_dict(j) for j in page],
            "next_before": page[-1].id if more and page else None,
        }

    def get_job(self, job_id: int, user: str | None = "") -> dict[str, Any] | None:
        """One job of this user, or None."""
        job = ImageJob.get_or_none((ImageJob.id == job_id) & owned_by(ImageJob.user, user))
        return job_to_dict(job) if job else None

    def file_path(self, relative: str) -> Path:
        """A local file holding a stored image (the file itself, or a cached copy of an S3 object)."""
        return self.store.local_path(relative)

    def image_key(self, file_id: int, user: str | None = "") -> str | None:
        """The store key of one image of this user's jobs; None when there is no such image or object."""
        row = (ImageFile.select().join(ImageJob)
               .where((ImageFile.id == file_id) & owned_by(ImageJob.user, user)).first())
        return row.path if row is not None and self.store.exists(row.path) else None

    def input_key(self, sha: str, user: str | None = "") -> str | None:
        """The store key of an input image (init image or mask) by its digest, only for a user with a job that used
        it and while it is stored."""
        if not _SHA256.match(sha):
            return None
        used = ImageJob.select(ImageJob.id).where(_uses(sha) & owned_by(ImageJob.user, user)).exists()
        return input_path(sha) if used and self.store.exists(input_path(sha)) else None

    def delete_job(self, job_id: int, user: str | None = "") -> bool:
        """Delete the job and its files, and its input images unless another job (anyone's) still uses them;
        False when there is no such job for this user."""
        job = ImageJob.get_or_none((ImageJob.id == job_id) & owned_by(ImageJob.user, user))
        if job is None:
            return False
        keys = [f.path for f in job.files]
        with database.atomic():
            ImageFile.delete().where(ImageFile.job == job).execute()
            job.delete_instance()
            # Unused inputs go inside the write transaction: a job created meanwhile either committed first (its
            # row keeps the file) or commits after us and then finds the file missing and writes it again
            # (services/images.py stores a job's inputs after its row).
            for sha in {job.init_image_sha, job.mask_sha, *_unit_pictures(job)} - {""}:
                if not ImageJob.select().where(_uses(sha)).exists():
                    keys.append(input_path(sha))
        # Rows go first: a listed job never points at a missing file.
        for key in keys:
            try:
                self.store.delete(key)
            except Exception:  # a full disk or an unreachable bucket: an orphan, never a listed job without image
                log.warning("could not delete %s", key, exc_info=True)
        return True



def _uses(sha: str) -> Any:
    """Jobs that use an input picture: as init image, mask, or a ControlNet unit's picture (its inputs/ path in the
    units' JSON; the digest is 64 hex digits, so the text match cannot hit anything else)."""
    return ((ImageJob.init_image_sha == sha) | (ImageJob.mask_sha == sha)
            | ImageJob.controlnet.contains(input_path(sha)))


def _unit_pictures(job: ImageJob) -> set[str]:
    """The digests of a job's ControlNet unit pictures."""
    paths = [unit.get("image") or "" for unit in json.loads(job.controlnet or "[]")]
    return {Path(p).stem for p in paths if p}
