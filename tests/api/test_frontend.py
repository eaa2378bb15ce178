"""/app: the React client's build is served as soon as it exists, and its absence is explained, not a bare 404."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.frontend import mount_frontend


def _client(dist: Path) -> TestClient:
    app = FastAPI()
    mount_frontend(app, dist)
    return TestClient(app)


def test_a_build_made_while_the_server_runs_is_served_without_a_restart(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    http = _client(dist)
    before = http.get("/app/")
    assert before.status_code == 503
    assert "npm run build" in before.text
    # `npm run build` while the server runs: the folder, its assets, then the page.
    (dist / "assets").mkdir(parents=True)
    (dist / "assets" / "index-abc.js").write_text("console.log('atelier')")
    (dist / "index.html").write_text("<!doctype html><title>Atelier client</title>")
    page = http.get("/app/")
    assert page.status_code == 200
    assert "Atelier client" in page.text
    asset = http.get("/app/assets/index-abc.js")
    assert asset.status_code == 200
    assert asset.text == "console.log('atelier')"
    assert http.get("/app/assets/missing.js").status_code == 404


def test_a_removed_build_says_how_to_build_again(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "index.html").write_text("<!doctype html><title>Atelier client</title>")
    http = _client(dist)
    assert http.get("/app/").status_code == 200
    (dist / "index.html").unlink()  # `vite build` empties the folder before it writes the new build
    answer = http.get("/app/")
    assert answer.status_code == 503
    assert "npm ci" in answer.text
    # /app without the slash reaches the same page.
    assert http.get("/app").status_code == 503
