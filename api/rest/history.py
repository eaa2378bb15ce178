"""GET /api/history: your image jobs, newest first, a page at a time."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from api.rest.common import MAX_ID, REFUSALS, Asking, Served, count_read

router = APIRouter()


@router.get("/history", summary="Your image jobs, newest first", responses=REFUSALS)
def history(request: Request, services: Served, who: Asking, limit: Annotated[int, Query(ge=1, le=200)] = 20,
            before: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None) -> dict[str, Any]:
    """Paged like /history in the Gradio API: pass `next_before` as `before` for the next page."""
    count_read(request)
    return services.history.list_jobs(who.scope, limit=limit, before=before)
