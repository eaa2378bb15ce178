"""The small REST surface: health now; history and images join with accounts."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from services.container import Services


def build_router(services: Services) -> APIRouter:
    """Routes bound to `services`, mounted under /api."""
    router = APIRouter()

    @router.get("/health", summary="Server and model states")
    def health() -> dict[str, Any]:
        """Always 200 while the server runs; each model reports not loaded / loading / ready / failed."""
        return services.health()

    return router
