"""AUTOMATIC1111's API with sd-webui-controlnet's units (`alwayson_scripts: {"ControlNet": {"args": [unit, …]}}`),
in process on the tiny models: a unit runs and is written into the infotext as the extension writes it, weight 0
gives the picture without it, a bad unit gets a 422 naming the field in A1111's terms, and a unit never reads a
file of the server; another user's key, or none, gets nothing."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from api.server import create_app
from services.accounts import AccountService
from services.api_keys import ApiKeyService
from storage.db import open_database
from storage.models import ImageJob
from tests.services.conftest import tiny_settings

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, tiny_sd_dir: Path, tiny_sdxl_dir: Path, tiny_cn_sd15: Path,
         tiny_cn_sdxl: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    config = tiny_settings(tmp_path_factory.mktemp("data"), tiny_sd_dir, tiny_sdxl_dir=tiny_sdxl_dir,
                           controlnets={"tiny-cn-sd15": tiny_cn_sd15, "tiny-cn-sdxl": tiny_cn_sdxl},
                           cache_enabled=False, limit_image_jobs="100000/minute", limit_reads="100000/minute")
    config.ensure_dirs()
    open_database(config.db_path)
    keys = {}
    for name in ("alice", "bob"):
        AccountService().add(name, PASSWORD)
        keys[name] = ApiKeyService().create(name, "tests")[0]
    with TestClient(create_app(config)) as client:
        yield client, keys


def picture() -> str:
    image = Image.new("RGB", (64, 64), (40, 90, 200))
    image.paste((250, 240, 10), (16, 16, 48, 48))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def txt2img(site: tuple[TestClient, dict[str, str]], user: str = "alice", **unit: Any) -> Any:
    client, keys = site
    body: dict[str, Any] = {"prompt": "a lighthouse", "width": 64, "height": 64, "steps": 2, "seed": 7}
    if unit:
        body["alwayson_scripts"] = {"ControlNet": {"args": [unit]}}
    return client.post("/sdapi/v1/txt2img", json=body, headers={"Authorization": f"Bearer {keys[user]}"})


def pixels(answer: Any) -> bytes:
    """The first image's pixels (its PNG also carries the infotext, which names the units)."""
    return Image.open(io.BytesIO(base64.b64decode(answer.json()["images"][0]))).convert("RGB").tobytes()


def unit(**fields: Any) -> dict[str, Any]:
    return {"enabled": True, "image": picture(), "module": "canny", "model": "tiny-cn-sd15", **fields}


def test_a_unit_runs_and_its_infotext_is_the_extensions(site: tuple[TestClient, dict[str, str]]) -> None:
    plain = txt2img(site)
    assert plain.status_code == 200, plain.text
    controlled = txt2img(site, **unit())
    assert controlled.status_code == 200, controlled.text
    assert pixels(controlled) != pixels(plain)
    info = controlled.json()["info"]
    assert 'ControlNet 0: \\"Module: canny, Model: tiny-cn-sd15 [' in info
    idle = txt2img(site, **unit(weight=0, pixel_perfect=True))
    assert pixels(idle) == pixels(plain)  # weight 0: exactly no ControlNet
    # A disabled unit, or none at all, asks for nothing.
    assert pixels(txt2img(site, **unit(enabled=False))) == pixels(plain)


@pytest.mark.parametrize(("fields", "field"), [
    ({"weight": 5}, "alwayson_scripts.ControlNet.args.0.weight"),
    ({"module": "nope"}, "alwayson_scripts.ControlNet.args.0.module"),
    ({"model": "nope [12345678]"}, "alwayson_scripts.ControlNet.args.0.model"),
    ({"model": "tiny-cn-sdxl"}, "alwayson_scripts.ControlNet.args.0.model"),
    ({"guidance_start": 0.9, "guidance_end": 0.1}, "alwayson_scripts.ControlNet.args.0.guidance_start"),
    ({"image": "not base64!"}, "alwayson_scripts.ControlNet.args.0.image"),
    ({"image": {"path": "/etc/passwd"}}, "alwayson_scripts.ControlNet.args.0.image"),
    ({"image": base64.b64encode(b"GIF89a not a picture").decode()}, "alwayson_scripts.ControlNet.args.0.image"),
])
def test_a_bad_unit_is_refused_naming_the_field_and_nothing_is_stored(site: tuple[TestClient, dict[str, str]],
                                                                       fields: dict[str, Any], field: str) -> None:
    before = ImageJob.select().count()
    answer = txt2img(site, **unit(**fields))
    assert answer.status_code == 422, answer.text
    named = [".".join(str(part) for part in d["loc"][1:]) for d in answer.json()["detail"]]
    assert field in named, answer.json()
    assert ImageJob.select().count() == before


def test_other_scripts_are_still_refused_and_no_key_gets_nothing(site: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = site
    body = {"prompt": "x", "alwayson_scripts": {"ADetailer": {"args": [True]}}}
    answer = client.post("/sdapi/v1/txt2img", json=body, headers={"Authorization": f"Bearer {keys['alice']}"})
    assert answer.status_code == 422
    assert "alwayson_scripts" in [".".join(str(part) for part in d["loc"][1:]) for d in answer.json()["detail"]]
    body = {"prompt": "x", "alwayson_scripts": {"ControlNet": {"args": [unit()]}}}
    assert client.post("/sdapi/v1/txt2img", json=body).status_code == 401
    assert client.post("/sdapi/v1/txt2img", json=body, auth=("bob", keys["alice"])).status_code == 401
