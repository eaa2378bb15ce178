"""The REST surface under /api, one router per resource: health, history (your image jobs), images (stored PNGs and
a job's input images), conversations, keys (your API keys), jobs (your running jobs), your usage, who you are (me),
and the admin routes under /api/admin. Requests are per user and rate limited (api/rest/common.py)."""

from __future__ import annotations

from fastapi import FastAPI
from limits import parse

from api.rest import admin, conversations, health, history, images, jobs, keys, me, usage
from api.rest.common import TooManyReads, shared_state_unavailable, too_many_reads
from services.admin import AdminError
from services.admission import UNAVAILABLE


def add_rest(app: FastAPI, read_limit: str) -> None:
    """Include every router under /api, with `read_limit` ("240/minute") on each read, and the answers for a read
    over it and for an unreachable Redis."""
    app.state.read_limit = parse(read_limit)
    app.add_exception_handler(TooManyReads, too_many_reads)
    for error in UNAVAILABLE:
        app.add_exception_handler(error, shared_state_unavailable)
    app.add_exception_handler(AdminError, admin.admin_refused)
    for module in (health, history, images, conversations, keys, jobs, usage, me):
        app.include_router(module.router, prefix="/api")
    app.include_router(admin.router, prefix="/api")
    app.include_router(admin.changes, prefix="/api")
