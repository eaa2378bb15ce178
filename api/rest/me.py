"""GET /api/me: who is asking (the account's name, or null in single-user mode) and whether they are an admin, so a
client shows the admin panel to admins only. It says nothing an admin route would not refuse anyway: the routes under
/api/admin check the role themselves on every request."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from api.rest.common import REFUSALS, Asking, count_read

router = APIRouter()


@router.get("/me", summary="Who you are", responses=REFUSALS)
def me(request: Request, who: Asking) -> dict[str, Any]:
    """Your account's name (null without accounts) and whether you may use the admin panel."""
    count_read(request)
    return {"name": who.name or None, "admin": who.admin}
