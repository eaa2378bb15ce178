"""Serves the built React client at /app, or a page saying how to build it."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

DIST = Path(__file__).resolve().parent.parent / "react_frontend" / "dist"

HOW_TO_BUILD = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Atelier client not built</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem}
code{background:#f3f3f3;padding:.1rem .3rem;border-radius:4px}</style></head><body>
<h1>The React client is not built yet</h1>
<p>Build it once, then reload this page:</p>
<pre><code>cd react_frontend
npm ci
npm run build</code></pre>
<p>Meanwhile the Gradio UI is at <a href="/">/</a>.</p></body></html>"""


class ReactClient:
    """The ASGI app at /app: the build in `dist` once it exists, else a 503 page saying how to make one. The build is
    looked for on every request, so `npm run build` while the server runs is served at once, without a restart."""

    def __init__(self, dist: Path) -> None:
        self.dist = dist
        # check_dir=False: the folder may not exist yet; StaticFiles looks each file up per request.
        self.static = StaticFiles(directory=dist, html=True, check_dir=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a file of the build, or the how-to-build page while there is none."""
        if scope["type"] == "http" and not (self.dist / "index.html").is_file():
            await HTMLResponse(HOW_TO_BUILD, status_code=503)(scope, receive, send)
            return
        await self.static(scope, receive, send)


def mount_frontend(app: FastAPI, dist: Path = DIST) -> None:
    """Mount the React client at /app: its build's files (index.html for the folder), or how to build it."""
    app.mount("/app", ReactClient(dist), name="react-client")
