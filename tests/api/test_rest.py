"""The REST surface: /api/health answers 200 with every model's state, whatever the models are doing."""

from __future__ import annotations

import io
from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image

from api.server import create_app
from services.accounts import AccountService
from storage.db import open_database
from storage.models import ImageJob
from tests.services.conftest import tiny_settings


def test_health_lists_both_models_before_anything_loads(tmp_path: Path, tiny_sd_dir: Path) -> None:
    response = TestClient(create_app(tiny_settings(tmp_path, tiny_sd_dir))).get("/api/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["profile"] == "tiny"
    assert body["models"]["image"]["state"] == "not loaded"
    assert body["models"]["text"]["state"] == "not loaded"
    assert body["models"]["text"]["model"].startswith("atelier-tiny-r1-gptq-4bit")
    assert body["memory"] == {"idle_policy": "resident", "keep_alive_s": 300.0}


def test_api_reaches_storage_only_through_services() -> None:
    import ast

    for module in (Path(__file__).resolve().parents[2] / "api").glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n == "storage" or n.startswith("storage.") for n in names), module.name


def test_an_input_image_is_served_only_to_users_whose_jobs_used_it(tmp_path: Path, tiny_sd_dir: Path) -> None:
    settings = tiny_settings(tmp_path, tiny_sd_dir)
    settings.ensure_dirs()
    open_database(settings.db_path)
    for name in ("alice", "bob"):  # before the app starts: with accounts, every read needs a login
        AccountService().add(name, "correct horse battery")
    app = create_app(settings)
    sha = "ab" * 32
    (settings.images_dir / "inputs").mkdir(parents=True)
    Image.new("RGB", (8, 8), "red").save(settings.images_dir / "inputs" / f"{sha}.png")
    ImageJob.create(user="alice", backend="fake", model="m", prompt="p", width=8, height=8, steps=1, cfg_scale=7,
                    seed=1, sampler="Euler a", mode="img2img", init_image_sha=sha)
    http = TestClient(app)
    answer = http.get(f"/api/inputs/{sha}", auth=("alice", "correct horse battery"))
    assert (answer.status_code, answer.headers["content-type"]) == (200, "image/png"), answer.text
    assert Image.open(io.BytesIO(answer.content)).getpixel((0, 0)) == (255, 0, 0)
    assert http.get(f"/api/inputs/{sha}", auth=("bob", "correct horse battery")).status_code == 404
    assert http.get("/api/inputs/..%2Fatelier.db", auth=("alice", "correct horse battery")).status_code in (404, 422)
