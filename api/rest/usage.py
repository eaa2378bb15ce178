"""GET /api/usage: your own usage over a period (jobs, images, tokens, GPU seconds), the figures an admin sees for you
in the admin panel."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from api.rest.admin import Days, Since, Until
from api.rest.common import REFUSALS, Asking, Served, count_read

router = APIRouter()


@router.get("/usage", summary="Your usage over a period", responses=REFUSALS)
def usage(request: Request, services: Served, who: Asking, since: Since = None, until: Until = None,
          days: Days = None) -> dict[str, Any]:
    """Jobs (done, failed, cancelled), image jobs, chat replies, images, prompt and completion tokens and GPU seconds
    over [since, until) (default: the last 30 days), summed from the request log."""
    count_read(request)
    return services.admin.usage(since, until, days, user=who.name)
