"""The REST surface under /api: health, and per-user history, images and conversations for scripts.

Reads authenticate with the Gradio login cookie or HTTP basic (checked by the gateway, which leaves the user
in the request state); each route is rate limited with slowapi.
"""

from __future__ import annotations

import math
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from slowapi import Limiter

from api.auth import Authenticator
from services.accounts import Viewer
from services.container import Services
from storage.models import ImageFile, ImageJob, owned_by


def rate_limit_exceeded(request: Request, exc: Exception) -> JSONResponse:
    """429 with Retry-After and a message, like the gateway's answer for Gradio routes."""
    limiter: Limiter = request.app.state.limiter
    item, identifiers = request.state.view_rate_limit  # set by slowapi before it raised
    reset, _ = limiter.limiter.get_window_stats(item, *identifiers)
    retry = max(1, math.ceil(reset - time.time()))
    message = f"Too many requests: the limit is {item}. Try again in {retry} s."
    return JSONResponse({"detail": message, "error": message}, status_code=429, headers={"Retry-After": str(retry)})


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

    @router.get("/history", summary="Your image jobs, newest first")
    @limiter.limit(read_limit)
    def history(request: Request, who: Viewer = who_is_asking, limit: Annotated[int, Query(ge=1, le=200)] = 20,
                before: int | None = None) -> dict[str, Any]:
        """Paged like /history in the Gradio API: pass `next_before` as `before` for the next page."""
        return services.history.list_jobs(who.scope, limit=limit, before=before)

    @router.get("/images/{file_id}", summary="One stored PNG (with its parameters chunk)",
                response_class=FileResponse)
    @limiter.limit(read_limit)
    def image(request: Request, file_id: int, who: Viewer = who_is_asking) -> FileResponse:
        """The PNG as stored; 404 for an id that is not yours."""
        row = (ImageFile.select().join(ImageJob)
               .where((ImageFile.id == file_id) & owned_by(ImageJob.user, who.scope)).first())
        path = services.history.file_path(row.path) if row else None
        if path is None or not path.is_file():
            raise HTTPException(404, f"image {file_id} does not exist.")
        # Stored images never change: browsers may keep them, but only for this user (private).
        return FileResponse(path, media_type="image/png",
                            headers={"Cache-Control": "private, max-age=31536000, immutable"})

    @router.get("/conversations/{conversation_id}", summary="One conversation with its messages")
    @limiter.limit(read_limit)
    def conversation(request: Request, conversation_id: int, who: Viewer = who_is_asking) -> dict[str, Any]:
        """Reasoning apart from each answer; 404 for an id that is not yours."""
        found = services.chat.get_conversation(conversation_id, who.scope)
        if found is None:
            raise HTTPException(404, f"conversation {conversation_id} does not exist.")
        return found

    return router
