"""GET /api/health: the server and its models, for load balancers and people (no login, no limit)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.rest.common import Served

router = APIRouter()


@router.get("/health", summary="Server and model states")
def health(services: Served) -> dict[str, Any]:
    """Always 200 while the server runs; each model reports not loaded / loading / ready / failed."""
    return services.health()
