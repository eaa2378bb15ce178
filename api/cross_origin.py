"""Pages of other sites (CORS): only the origins the owner trusts (ATELIER_CORS_ORIGINS) may call Atelier from a
browser with the user's login and read the answers; every other site's page gets no CORS header, so its browser
keeps the answers from it (and api/rest/common.same_origin refuses its changes).

Starlette's CORSMiddleware does the work (preflights, Vary, credentials). Its presence on the outer app also turns
off Gradio's own CORS middleware, which, on any host but localhost, lets every origin read Gradio's answers with the
user's cookie (gradio.route_utils.CustomCORSMiddleware defers to a parent app's CORSMiddleware).
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

# What the React client reads from other answers: an export's counts and file name, a rate limit's wait, the id.
EXPOSED = ["Content-Disposition", "Retry-After", "X-Atelier-Jobs", "X-Atelier-Files", "X-Request-Id"]


def add_cors(app: FastAPI, origins: list[str]) -> None:
    """Answer preflights and add CORS headers for `origins` alone (none: no other site), outside every other
    middleware: a preflight carries no login, so the gateway must not see it."""
    app.add_middleware(CORSMiddleware, allow_origins=list(origins), allow_credentials=True,
                       allow_methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"], allow_headers=["*"],
                       expose_headers=EXPOSED, max_age=600)
