"""Who a log line is about: the request id, user, job id, client address and route of the work under way, carried in
context variables.

The request-id middleware (api/request_id.py) sets the request id, the gateway the user and client; the services bind
the job id as they learn it. A job's worker thread starts in a copy of its caller's context (services/jobs.py), so
the lines it logs carry the request that started it. A log line (api/log_format.py writes them), a request log row
(services/request_log.py) and the `X-Request-ID` a user quotes in a report then share one id.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

REQUEST_ID: ContextVar[str] = ContextVar("atelier_request_id", default="")
USER: ContextVar[str | None] = ContextVar("atelier_user", default=None)
JOB_ID: ContextVar[int | None] = ContextVar("atelier_job_id", default=None)
CLIENT: ContextVar[str] = ContextVar("atelier_client", default="")
ROUTE: ContextVar[str] = ContextVar("atelier_route", default="")
# When the request joined Gradio's queue (time.perf_counter()): a job's wait and duration count from there.
QUEUED_AT: ContextVar[float | None] = ContextVar("atelier_queued_at", default=None)
_VARS: dict[str, ContextVar[Any]] = {"request_id": REQUEST_ID, "user": USER, "job_id": JOB_ID, "client": CLIENT,
                                     "route": ROUTE, "queued_at": QUEUED_AT}
# Where the gateway leaves a request's context in its ASGI scope's state (Starlette's request.state), for the Gradio
# handlers that run later for it on another task or thread (a queued event keeps its queue/join request).
SCOPE_KEY = "atelier_log_context"


@contextmanager
def bound(**values: Any) -> Iterator[None]:
    """Set some of the context (request_id, user, job_id, client, route, queued_at) for the block and the threads it
    starts, then restore it."""
    tokens = [(_VARS[name], _VARS[name].set(value)) for name, value in values.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def bind(**values: Any) -> None:
    """Set some of the context for the rest of the current one (a job's own thread)."""
    for name, value in values.items():
        _VARS[name].set(value)


def of_request(request: Any) -> dict[str, Any]:
    """The context the gateway left on a Starlette request (or a Gradio gr.Request wrapping one); {} for none."""
    http = getattr(request, "request", request)  # gr.Request holds Starlette's request as .request
    scope = getattr(http, "scope", None) or {}
    return dict((scope.get("state") or {}).get(SCOPE_KEY) or {})


def current() -> dict[str, Any]:
    """The request id, user, job id, client, route and queue time in effect here."""
    return {name: var.get() for name, var in _VARS.items()}
