"""Health: `GET /api/health` (the server and its models, for people), and for orchestrators `GET /api/health/live`
(the process serves) and `GET /api/health/ready` (it can do its work: database, Redis when configured, models loaded
or loadable), as Kubernetes probes and HAProxy's `option httpchk` expect: 200 when the answer is yes, 503 when it is
no, with what was checked in the body. No login (probes carry none), no limit, no user data."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.rest.common import Served
from services.readiness import readiness

router = APIRouter()
# Below HAProxy's `timeout check` (3 s) and Kubernetes' default probe timeout (1 s is too short for a PostgreSQL
# connection from a cold pool): a database or Redis that takes longer is as good as down for serving.
READY_TIMEOUT_S = 2.5
_in_flight: dict[int, asyncio.Future[tuple[bool, dict[str, Any]]]] = {}  # per Services: the check under way


@router.get("/health", summary="Server and model states")
def health(services: Served) -> dict[str, Any]:
    """Always 200 while the server runs; each model reports not loaded / loading / ready / failed."""
    return services.health()


@router.get("/health/live", summary="Liveness: the process serves requests")
async def live() -> dict[str, str]:
    """Always 200 while the event loop answers (on the loop itself: a stuck loop fails the probe)."""
    return {"status": "ok"}


@router.get("/health/ready", summary="Readiness: database, Redis and models can serve",
            responses={503: {"description": "Not ready: `checks` says what failed"}})
async def ready(services: Served) -> JSONResponse:
    """200 when ready, else 503; `checks` gives each check's outcome."""
    # One check at a time, shared by every probe that asks meanwhile: a hanging database must not make each probe
    # leave a thread behind.
    pending = _in_flight.get(id(services))
    if pending is None or pending.done() or pending.get_loop() is not asyncio.get_running_loop():
        redis = services.shared.redis
        pending = asyncio.ensure_future(asyncio.to_thread(
            readiness, [services.image_slot, services.text_slot], redis.ping if redis is not None else None))
        _in_flight[id(services)] = pending
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):  # not wait_for, which may swallow a cancel on Python 3.11
            ok, checks = await asyncio.shield(pending)
    except TimeoutError:
        ok, checks = False, {"timeout": f"the checks took longer than {READY_TIMEOUT_S:g} s"}
    return JSONResponse({"status": "ready" if ok else "not ready", "checks": checks},
                        status_code=200 if ok else 503, headers={"Cache-Control": "no-store"})
