"""History queries: list, fetch and delete image jobs, always scoped to a user (None: an admin, every user)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from contracts import InvalidRequest
from storage.blobs import BlobStore, LocalStore
from storage.connections import database
from storage.models import ImageFile, ImageJob, input_path, owned_by

log = logging.getLogger(__name__)

MAX_PAGE = 200
MAX_IDS = 10_000  # ids in one bulk request
MAX_ID = 2**63 - 1
ID_CHUNK = 500  # ids per IN (…) list: well under SQLite's bound-parameter limit
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
        "favourite": bool(job.favourite),
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
        return bool(self.delete_jobs([job_id], user)["deleted"])

    def delete_jobs(self, job_ids: Iterable[int], user: str | None = "") -> dict[str, list[int]]:
        """Delete many jobs at once, as delete_job does one: the rows in one transaction, then their files and
        objects. {"deleted": ids, "missing": ids that are not this user's jobs (or no longer exist)}."""
        wanted = list(dict.fromkeys(check_ids(job_ids, "job_ids")))
        deleted: list[int] = []
        keys: list[str] = []
        with database.atomic():
            for at in range(0, len(wanted), ID_CHUNK):
                chunk = wanted[at:at + ID_CHUNK]
                columns = (ImageJob.id, ImageJob.init_image_sha, ImageJob.mask_sha, ImageJob.controlnet)
                jobs = list(ImageJob.select(*columns).where(ImageJob.id.in_(chunk) & owned_by(ImageJob.user, user)))
                ids = [j.id for j in jobs]
                keys += [f.path for f in ImageFile.select(ImageFile.path).where(ImageFile.job.in_(ids))]
                ImageFile.delete().where(ImageFile.job.in_(ids)).execute()
                ImageJob.delete().where(ImageJob.id.in_(ids)).execute()
                deleted += ids
                # Unused inputs go inside the write transaction: a job created meanwhile either committed first (its
                # row keeps the file) or commits after us and then finds the file missing and writes it again
                # (services/images.py stores a job's inputs after its row).
                for sha in {sha for j in jobs for sha in (j.init_image_sha, j.mask_sha, *_unit_pictures(j))} - {""}:
                    if not ImageJob.select().where(_uses(sha)).exists():
                        keys.append(input_path(sha))
        # Rows go first: a listed job never points at a missing file.
        self.delete_keys(keys)
        gone = set(deleted)
        return {"deleted": deleted, "missing": [i for i in wanted if i not in gone]}

    def delete_keys(self, keys: Iterable[str]) -> None:
        """Remove stored objects whose rows are gone; one that cannot go (a full disk, an unreachable bucket) stays
        as an orphan and is logged, never a listed job without its image."""
        for key in keys:
            try:
                self.store.delete(key)
            except Exception:
                log.warning("could not delete %s", key, exc_info=True)

    def set_favourite(self, job_id: int, user: str, favourite: bool = True) -> bool:
        """Mark (or unmark) one of the user's jobs as a favourite; False when it is not theirs."""
        check_ids([job_id], "job_id")
        return bool(ImageJob.update(favourite=bool(favourite))
                    .where((ImageJob.id == job_id) & (ImageJob.user == user)).execute())


def check_ids(ids: Iterable[Any], field: str) -> list[int]:
    """Row ids from a client: whole numbers from 1 to int64's maximum, at most MAX_IDS; InvalidRequest otherwise."""
    if isinstance(ids, str | bytes) or not isinstance(ids, Iterable):
        raise InvalidRequest({field: f"{field} must be a list of ids."})
    checked = list(ids)
    if len(checked) > MAX_IDS:
        raise InvalidRequest({field: f"{field} holds {len(checked)} ids; at most {MAX_IDS} at once."})
    for value in checked:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ID:
            raise InvalidRequest({field: f"{field} must hold ids (whole numbers from 1), got {value!r}."})
    return checked


def _uses(sha: str) -> Any:
    """Jobs that use an input picture: as init image, mask, or a ControlNet unit's picture (its inputs/ path in the
    units' JSON; the digest is 64 hex digits, so the text match cannot hit anything else)."""
    return ((ImageJob.init_image_sha == sha) | (ImageJob.mask_sha == sha)
            | ImageJob.controlnet.contains(input_path(sha)))


def _unit_pictures(job: ImageJob) -> set[str]:
    """The digests of a job's ControlNet unit pictures."""
    paths = [unit.get("image") or "" for unit in json.loads(job.controlnet or "[]")]
    return {Path(p).stem for p in paths if p}
