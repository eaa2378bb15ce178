"""The REST surface: /api/health answers 200 with every model's state, whatever the models are doing."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from app import create_app
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
