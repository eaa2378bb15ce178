"""The REST surface under /api, one router per resource: health, history (your image jobs: search, favourites,
bulk delete, export), images (stored PNGs and a job's input images), conversations (search, rename, favourites,
export), collections, your account (its archive, import, retention), keys (your API keys), jobs (your running jobs),
your usage, who you are (me), and the admin routes under /api/admin. Requests are per user and rate limited
(api/rest/common.py)."""

from __future__ import annotations

from fastapi import FastAPI
from limits import parse

from api.rest import account, admin, collections, conversations, health, history, images, jobs, keys, me, usage
from api.rest.common import TooManyReads, invalid_request, shared_state_unavailable, too_many_reads
from contracts import InvalidRequest
from services.admin import AdminError
from services.admission import UNAVAILABLE


def add_rest(app: FastAPI, read_limit: str, upload_limit: str = "30/minute") -> None:
    """Include every router under /api, with `read_limit` ("240/minute") on each route (`upload_limit` on an
    account import), and the answers for a request over it, a service's refusal and an unreachable Redis."""
    app.state.read_limit = parse(read_limit)
    app.state.upload_limit = parse(upload_limit)
    app.add_exception_handler(TooManyReads, too_many_reads)
    app.add_exception_handler(InvalidRequest, invalid_request)
    for error in UNAVAILABLE:
        app.add_exception_handler(error, shared_state_unavailable)
    app.add_exception_handler(AdminError, admin.admin_refused)
    for module in (health, history, images, conversations, collections, account, keys, jobs, usage, me):
        app.include_router(module.router, prefix="/api")
    app.include_router(admin.router, prefix="/api")
    app.include_router(admin.changes, prefix="/api")
