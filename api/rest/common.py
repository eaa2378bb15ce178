"""What the REST routers share: who is asking (a FastAPI dependency), the read limit (another), the refusals the
OpenAPI schema lists, and the answers for a request over its limit or when the replicas' Redis is out of reach.

Reads authenticate with the Gradio login cookie or HTTP basic, checked once by the gateway, which leaves the user in
the request state; the services, the authenticator and the limiter are the app's (app.state), set by api/server.py.
"""

from __future__ import annotations

import math
import time
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Path, Request
from fastapi.responses import JSONResponse
from limits import RateLimitItem
from pydantic import BaseModel

from services.accounts import Viewer
from services.admission import REFUSAL_STATE_KEY, UNAVAILABLE_MESSAGE
from services.container import Services

# Ids are SQLite rowids: 1 up to int64's maximum. A bigger number would overflow the query (a 500), so it is
# refused as a 422 before any route runs.
MAX_ID = 2**63 - 1
Id = Annotated[int, Path(ge=1, le=MAX_ID, description="an id from /api/history or the Gradio API")]


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


def services_of(request: Request) -> Services:
    """The app's services (a FastAPI dependency)."""
    return request.app.state.services  # type: ignore[no-any-return]


def viewer(request: Request) -> Viewer:
    """Who is asking, as resolved by the gateway (argon2 runs at most once per request); 401 for nobody."""
    auth = request.app.state.auth
    name = auth.user_of(request)
    if name is None:
        raise HTTPException(401, "Log in (the Gradio login cookie), or send HTTP basic credentials or an API key "
                                 "(Authorization: Bearer atl_…).",
                            headers={"WWW-Authenticate": 'Basic realm="Atelier"'})
    return auth.viewer(name)  # type: ignore[no-any-return]


class TooManyReads(Exception):
    """A REST read over the read limit: the limit, and the seconds until it frees up."""

    def __init__(self, item: RateLimitItem, retry: int) -> None:
        super().__init__(str(item))
        self.item, self.retry = item, retry


def count_read(request: Request) -> None:
    """Count the request against the read limit of whoever asks, per route; TooManyReads over it. Off where limits do
    not apply (api.auth.limits_apply). Each read calls it first thing, once its parameters and its user are known
    (as slowapi's decorator did): a refused request (401, 422) costs nothing."""
    state = request.app.state
    if not state.limiter.enabled:
        return
    user = state.auth.user_of(request)
    # The user's own read limit when an admin set one (services/user_limits.py), else the setting's.
    item: RateLimitItem = state.services.limits.effective(user).item("read") if user else state.read_limit
    route = request.scope["endpoint"].__name__
    key = state.auth.rate_key(request)
    strategy = state.limiter.limiter
    if not strategy.hit(item, "rest", route, key):
        reset, _ = strategy.get_window_stats(item, "rest", route, key)
        setattr(request.state, REFUSAL_STATE_KEY, "read")  # its request log row: refused by the read limit
        raise TooManyReads(item, max(1, math.ceil(reset - time.time())))


def same_origin(request: Request) -> None:
    """A 403 for a request that changes something from another site's page (its Origin names another host): a browser
    sends the login cookie, and remembered basic credentials, with any site's request."""
    origin = request.headers.get("origin")
    if request.method in ("GET", "HEAD") or not origin:
        return
    if urlsplit(origin).netloc != request.headers.get("host", ""):
        raise HTTPException(403, "This request came from another site's page; it is refused.")


Served = Annotated[Services, Depends(services_of)]
Asking = Annotated[Viewer, Depends(viewer)]


def too_many_reads(request: Request, exc: Exception) -> JSONResponse:
    """429 with Retry-After and a message, like the gateway's answer for Gradio routes."""
    assert isinstance(exc, TooManyReads)
    message = f"Too many requests: the limit is {exc.item}. Try again in {exc.retry} s."
    return JSONResponse({"detail": message, "error": message}, status_code=429,
                        headers={"Retry-After": str(exc.retry)})


def shared_state_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """503 with a message when the replicas' Redis does not answer (the limits cannot be checked)."""
    return JSONResponse({"detail": UNAVAILABLE_MESSAGE, "error": UNAVAILABLE_MESSAGE}, status_code=503,
                        headers={"Retry-After": "10"})
