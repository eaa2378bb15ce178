"""Health for orchestrators: `GET /api/health/live` (the process serves) and `GET /api/health/ready` (it can do
its work: database, Redis when configured, models loaded or loadable), as Kubernetes probes and HAProxy's
`option httpchk` expect: 200 when the answer is yes, 503 when it is no, with what was checked in the body.
`/api/health` (states and details for people) stays as it is, in api/rest.py.

Self-contained: `build_health_router(slots, redis_ping)` gives a router to include under /api; it needs no login
(probes carry none) and shows no user data.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from services.models import ModelSlot
from services.readiness import readiness

# Below HAProxy's `timeout check` (3 s) and Kubernetes' default probe timeout (1 s is too short for a PostgreSQL
# connection from a cold pool): a database or Redis that takes longer is as good as down for serving.
READY_TIMEOUT_S = 2.5


def build_health_router(slots: Sequence[ModelSlot[Any]], redis_ping: Callable[[], Any] | None) -> APIRouter:
    """The /health/live and /health/ready routes over these model slots and this Redis ping (None: no Redis)."""
    router = APIRouter()
    in_flight: asyncio.Future[tuple[bool, dict[str, Any]]] | None = None

    @router.get("/health/live", summary="Liveness: the process serves requests")
    async def live() -> dict[str, str]:
        """Always 200 while the event loop answers (on the loop itself: a stuck loop fails the probe)."""
        return {"status": "ok"}

    @router.get("/health/ready", summary="Readiness: database, Redis and models can serve",
                responses={503: {"description": "Not ready: `checks` says what failed"}})
    async def ready() -> JSONResponse:
        """200 when ready, else 503; `checks` gives each check's outcome."""
        nonlocal in_flight
        # One check at a time, shared by every probe that asks meanwhile: a hanging database must not make each
        # probe leave a thread behind.
        if in_flight is None or in_flight.done() or in_flight.get_loop() is not asyncio.get_running_loop():
            in_flight = asyncio.ensure_future(asyncio.to_thread(readiness, slots, redis_ping))
        try:
            ok, checks = await asyncio.wait_for(asyncio.shield(in_flight), READY_TIMEOUT_S)
        except TimeoutError:
            ok, checks = False, {"timeout": f"the checks took longer than {READY_TIMEOUT_S:g} s"}
        return JSONResponse({"status": "ready" if ok else "not ready", "checks": checks},
                            status_code=200 if ok else 503, headers={"Cache-Control": "no-store"})

    return router
