"""`GET /metrics`: the Prometheus exposition of services/metrics.py, for those ATELIER_METRICS_ACCESS lets in.

protected (the default): a client on this machine (a loopback peer, and no proxy forwarded the request), a bearer
token equal to ATELIER_METRICS_TOKEN (what a Prometheus elsewhere sends), or an admin's login cookie. open: anyone
who can reach the port (the compose `scale` profile: replicas are reachable only on their private network, and
HAProxy refuses /metrics from outside). off: 404.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from services.metrics import exposition

Scope = dict[str, Any]
Headers = dict[str, str]
# Headers a proxy adds: a loopback peer that sends them is forwarding someone else's request.
FORWARDING = ("x-forwarded-for", "forwarded", "x-real-ip")


def is_local(scope: Scope, headers: Headers) -> bool:
    """Whether the request comes from this machine: its peer is loopback and nobody forwarded it. A forwarded request
    is never local, whoever forwarded it: a proxy's "127.0.0.1" is the proxy's own machine, and a proxy on this
    machine would otherwise make every client look local."""
    if any(name in headers for name in FORWARDING):
        return False
    try:
        return ipaddress.ip_address((scope.get("client") or ("", 0))[0]).is_loopback
    except ValueError:
        return False


def bearer_matches(headers: Headers, token: str | None) -> bool:
    """Whether the request carries `Authorization: Bearer <token>` (compared in constant time)."""
    if not token:
        return False
    scheme, _, value = headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())


async def metrics_allowed(request: Request, access: str, token: str | None, local: Callable[[Request], bool],
                          admin: Callable[[Request], Awaitable[bool]]) -> bool:
    """The protection check: `access` open lets everyone in, off no one; protected lets in a local client, the
    token's bearer, or an admin (`admin(request)`, awaited only when nothing cheaper let the request in)."""
    if access != "protected":
        return access == "open"
    headers = {k.lower(): v for k, v in request.headers.items()}
    return bearer_matches(headers, token) or local(request) or await admin(request)


def metrics_endpoint(access: str, token: str | None, local: Callable[[Request], bool],
                     admin: Callable[[Request], Awaitable[bool]]) -> Callable[[Request], Awaitable[Response]]:
    """The /metrics route (a Starlette endpoint, for app.add_route): 404 when off, 403 for those not let in."""

    async def metrics(request: Request) -> Response:
        if access == "off":
            return JSONResponse({"detail": "Metrics are off (ATELIER_METRICS_ACCESS=off)."}, status_code=404)
        if not await metrics_allowed(request, access, token, local, admin):
            message = ("Metrics are for this machine, an admin, or a scraper with ATELIER_METRICS_TOKEN "
                       "(Authorization: Bearer TOKEN).")
            return JSONResponse({"detail": message}, status_code=403)
        # The process collector reads /proc and every collector takes the registry's lock: off the event loop.
        body, content_type = await anyio.to_thread.run_sync(exposition, request.headers.get("accept", ""))
        return Response(body, media_type=content_type, headers={"Cache-Control": "no-store"})

    return metrics
