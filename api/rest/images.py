"""GET /api/images/{id} and /api/inputs/{sha}: your stored PNGs, and the input images (init image, mask) of your
jobs, as files, streams from the bucket, or redirects to presigned URLs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse

from api.rest.common import NOT_YOURS, REFUSALS, Asking, Id, Served, count_read
from services.container import Services

Sha = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="the sha256 in a job's inputs/<sha>.png")]
A_PNG: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {}}, "description": "The PNG"},
    307: {"description": "With ATELIER_S3_PRESIGN: a short-lived presigned URL of the PNG"},
    **REFUSALS, **NOT_YOURS}

router = APIRouter()


@router.get("/images/{file_id}", summary="One stored PNG (with its parameters chunk)", response_class=FileResponse,
            responses=A_PNG)
def image(request: Request, services: Served, who: Asking, file_id: Id) -> Response:
    """The PNG as stored (streamed, or a redirect to a presigned URL); 404 for an id that is not yours."""
    count_read(request)
    return send(services, services.history.image_key(file_id, who.scope),
                HTTPException(404, f"image {file_id} does not exist."))


@router.get("/inputs/{sha}", summary="An input image (init image or mask) of one of your jobs",
            response_class=FileResponse, responses=A_PNG)
def input_image(request: Request, services: Served, who: Asking, sha: Sha) -> Response:
    """A job's `init_image` or `mask` as history names it (inputs/<sha>.png), to reopen the job; 404 unless
    one of your jobs used it."""
    count_read(request)
    return send(services, services.history.input_key(sha, who.scope),
                HTTPException(404, f"input image {sha} is not one of yours."))


def send(services: Services, key: str | None, missing: HTTPException) -> Response:
    """A stored PNG: the file itself, a redirect to a presigned URL (ATELIER_S3_PRESIGN), or the object streamed;
    `missing` when there is no such key for this user."""
    if key is None:
        raise missing
    store = services.history.store
    # Stored images never change: browsers may keep them, but only for this user (private).
    headers = {"Cache-Control": "private, max-age=31536000, immutable"}
    if (path := store.local_file(key)) is not None:
        return FileResponse(path, media_type="image/png", headers=headers)
    settings = services.settings
    if settings.s3_presign and (url := store.presigned_url(key, settings.s3_presign_ttl_s)) is not None:
        # The URL expires: the redirect itself must not be kept (the owner check runs on every request).
        return RedirectResponse(url, status_code=307, headers={"Cache-Control": "private, no-store"})
    blob = store.open(key)
    if blob is None:  # deleted between the check and the read
        raise missing
    return StreamingResponse(blob.chunks, media_type="image/png",
                             headers={**headers, "Content-Length": str(blob.size)})
