"""The REST surface under /api: health, and per-user history, images and conversations for scripts.

Reads authenticate with the Gradio login cookie or HTTP basic (checked by the gateway, which leaves the user
in the request state); each route is rate limited with slowapi.
"""

from __future__ import annotations

import math
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from pydantic import BaseModel
from slowapi import Limiter

from api.auth import Authenticator
from services.accounts import Viewer
from services.admission import UNAVAILABLE_MESSAGE
from services.container import Services

# Ids are SQLite rowids: 1 up to int64's maximum. A bigger number would overflow the query (a 500), so it is
# refused as a 422 before any route runs.
MAX_ID = 2**63 - 1
Id = Annotated[int, Path(ge=1, le=MAX_ID, description="an id from /api/history or the Gradio API")]
Sha = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="the sha256 in a job's inputs/<sha>.png")]


class Problem(BaseModel):
    """Why a request was refused."""

    detail: str


# Every refusal a route may answer, so the OpenAPI schema (and the fuzz test that checks answers against it)
# knows them.
REFUSALS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "No valid login cookie or HTTP basic credentials"},
    429: {"model": Problem, "description": "Over the rate limit; Retry-After says when to try again"},
}
NOT_YOURS: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "No such id of yours"}}


def rate_limit_exceeded(request: Request, exc: Exception) -> JSONResponse:
    """429 with Retry-After and a message, like the gateway's answer for Gradio routes."""
    limiter: Limiter = request.app.state.limiter
    item, identifiers = request.state.view_rate_limit  # set by slowapi before it raised
    reset, _ = limiter.limiter.get_window_stats(item, *identifiers)
    retry = max(1, math.ceil(reset - time.time()))
    message = f"Too many requests: the limit is {item}. Try again in {retry} s."
    return JSONResponse({"detail": message, "error": message}, status_code=429, headers={"Retry-After": str(retry)})


def shared_state_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """503 with a message when the replicas' Redis does not answer (the limits cannot be checked)."""
    return JSONResponse({"detail": UNAVAILABLE_MESSAGE, "error": UNAVAILABLE_MESSAGE}, status_code=503,
                        headers={"Retry-After": "10"})


def build_router(services: Services, auth: Authenticator, limiter: Limiter, read_limit: str) -> APIRouter:
    """Routes bound to `services`, mounted under /api."""
    router = APIRouter()

    def viewer(request: Request) -> Viewer:
        name = auth.user_of(request)  # resolved by the gateway: argon2 runs at most once per request
        if name is None:
            raise HTTPException(401, "Log in (the Gradio login cookie) or send HTTP basic credentials.",
                                headers={"WWW-Authenticate": 'Basic realm="Atelier"'})
        return auth.viewer(name)

    # A default, not an Annotated alias: with postponed annotations FastAPI cannot see a local alias.
    who_is_asking = Depends(viewer)

    @router.get("/health", summary="Server and model states")
    def health() -> dict[str, Any]:
        """Always 200 while the server runs; each model reports not loaded / loading / ready / failed."""
        return services.health()

    @router.get("/history", summary="Your image jobs, newest first", responses=REFUSALS)
    @limiter.limit(read_limit)
    def history(request: Request, who: Viewer = who_is_asking, limit: Annotated[int, Query(ge=1, le=200)] = 20,
                before: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None) -> dict[str, Any]:
        """Paged like /history in the Gradio API: pass `next_before` as `before` for the next page."""
        return services.history.list_jobs(who.scope, limit=limit, before=before)

    def send(key: str | None, missing: HTTPException) -> Response:
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

    @router.get("/images/{file_id}", summary="One stored PNG (with its parameters chunk)",
                response_class=FileResponse,
                responses={200: {"content": {"image/png": {}}, "description": "The PNG"},
                           307: {"description": "With ATELIER_S3_PRESIGN: a short-lived presigned URL of the PNG"},
                           **REFUSALS, **NOT_YOURS})
    @limiter.limit(read_limit)
    def image(request: Request, file_id: Id, who: Viewer = who_is_asking) -> Response:
        """The PNG as stored (streamed, or a redirect to a presigned URL); 404 for an id that is not yours."""
        return send(services.history.image_key(file_id, who.scope),
                    HTTPException(404, f"image {file_id} does not exist."))

    @router.get("/inputs/{sha}", summary="An input image (init image or mask) of one of your jobs",
                response_class=FileResponse,
                responses={200: {"content": {"image/png": {}}, "description": "The PNG"},
                           307: {"description": "With ATELIER_S3_PRESIGN: a short-lived presigned URL of the PNG"},
                           **REFUSALS, **NOT_YOURS})
    @limiter.limit(read_limit)
    def input_image(request: Request, sha: Sha, who: Viewer = who_is_asking) -> Response:
        """A job's `init_image` or `mask` as history names it (inputs/<sha>.png), to reopen the job; 404 unless
        one of your jobs used it."""
        return send(services.history.input_key(sha, who.scope),
                    HTTPException(404, f"input image {sha} is not one of yours."))

    @router.get("/conversations/{conversation_id}", summary="One conversation with its messages",
                responses={**REFUSALS, **NOT_YOURS})
    @limiter.limit(read_limit)
    def conversation(request: Request, conversation_id: Id, who: Viewer = who_is_asking) -> dict[str, Any]:
        """Reasoning apart from each answer; 404 for an id that is not yours."""
        found = services.chat.get_conversation(conversation_id, who.scope)
        if found is None:
            raise HTTPException(404, f"conversation {conversation_id} does not exist.")
        return found

    return router
