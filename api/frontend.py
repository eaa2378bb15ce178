"""Serves the built React client at /app, or a page saying how to build it."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

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


def mount_frontend(app: FastAPI, dist: Path = DIST) -> None:
    """Mount `dist` at /app (index.html for every unknown path); without a build, explain how to make one."""
    if (dist / "index.html").is_file():
        app.mount("/app", StaticFiles(directory=dist, html=True), name="react-client")
        return

    @app.get("/app", include_in_schema=False)
    @app.get("/app/{rest:path}", include_in_schema=False)
    def not_built(rest: str = "") -> HTMLResponse:
        return HTMLResponse(HOW_TO_BUILD, status_code=503)
