"""AUTOMATIC1111's API with sd-webui-controlnet's units (`alwayson_scripts: {"ControlNet": {"args": [unit, …]}}`),
in process on the tiny models: a unit runs and is written into the infotext as the extension writes it, weight 0
gives the picture without it, a bad unit gets a 422 naming the field in A1111's terms, and a unit never reads a
file of the server; another user's key, or none, gets nothing. And the extension's own routes under /controlnet
(version, model_list, module_list, control_types, settings, detect): their answers in the extension's shapes, bad
input named in A1111's error shape, every route closed to no key, a wrong key and a revoked one, and detect stateless:
it stores no job, file or grant."""

from __future__ import annotations

import base64
import io
import json
import os
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
                           cache_enabled=False, limit_image_jobs="100000/minute", limit_reads="100000/minute",
                           limit_logins="100000/minute", upload_max_bytes=256 * 1024, upload_max_pixels=512 * 512)
    config.ensure_dirs()
    open_database(config.db_path)
    keys = {}
    for name in ("alice", "bob"):
        AccountService().add(name, PASSWORD)
        keys[name] = ApiKeyService().create(name, "tests")[0]
    keys["revoked"] = ApiKeyService().create("bob", "gone")[0]
    ApiKeyService().revoke("bob", "gone")
    with TestClient(create_app(config)) as client:
        yield client, keys


def picture() -> str:
    image = Image.new("RGB", (64, 64), (40, 90, 200))
    image.paste((250, 240, 10), (16, 16, 48, 48))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def big_picture(width: int, height: int) -> str:
    out = io.BytesIO()
    Image.new("L", (width, height), 128).save(out, format="PNG")
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
    ({"image": big_picture(4096, 2), "processor_res": 1024}, "alwayson_scripts.ControlNet.args.0.image"),
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


# --- sd-webui-controlnet's own routes ----------------------------------------------------------------------------

CONTROLNET_ROUTES = [("GET", "/controlnet/version"), ("GET", "/controlnet/model_list"),
                     ("GET", "/controlnet/module_list"), ("GET", "/controlnet/control_types"),
                     ("GET", "/controlnet/settings"), ("POST", "/controlnet/detect")]


def as_user(site: tuple[TestClient, dict[str, str]], method: str, path: str, user: str = "alice", **kw: Any) -> Any:
    client, keys = site
    return client.request(method, path, headers={"Authorization": f"Bearer {keys[user]}"}, **kw)


def detect(site: tuple[TestClient, dict[str, str]], user: str = "alice", **fields: Any) -> Any:
    body = {"controlnet_module": "canny", "controlnet_input_images": [picture()], **fields}
    return as_user(site, "POST", "/controlnet/detect", user, json=body)


def decoded(text: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(text)))


def test_the_listings_are_the_extensions(site: tuple[TestClient, dict[str, str]]) -> None:
    assert as_user(site, "GET", "/controlnet/version").json() == {"version": 3}
    models = as_user(site, "GET", "/controlnet/model_list", params={"update": "true"}).json()["model_list"]
    assert [m.split(" [")[0] for m in models] == ["tiny-cn-sd15", "tiny-cn-sdxl"]
    assert all(len(m.split(" [")[1]) == 9 for m in models)  # "name [8 hex]", as a unit's model takes it
    modules = as_user(site, "GET", "/controlnet/module_list").json()
    assert modules["module_list"][0] == "none"
    assert {"canny", "hed"} <= set(modules["module_list"])
    assert "softedge_hed" not in modules["module_list"]  # internal names unless alias_names
    canny = modules["module_detail"]["canny"]
    assert canny == {"model_free": True, "sliders": [
        {"name": "Resolution", "value": 512, "min": 64, "max": 2048, "step": 8},
        {"name": "Low Threshold", "value": 100, "min": 1, "max": 255, "step": 1},
        {"name": "High Threshold", "value": 200, "min": 1, "max": 255, "step": 1}]}
    labels = as_user(site, "GET", "/controlnet/module_list", params={"alias_names": "true"}).json()
    assert "softedge_hed" in labels["module_list"]
    assert labels["module_detail"]["softedge_hed"]["model_free"] is False
    types = as_user(site, "GET", "/controlnet/control_types").json()["control_types"]
    assert types["All"]["model_list"] == ["None", *models]
    assert types["Canny"] == {"module_list": ["none", "canny", "invert (from white bg & black line)"],
                              "model_list": ["None"], "default_option": "canny", "default_model": "None"}
    assert types["Tile"]["module_list"][0] == "none"
    assert as_user(site, "GET", "/controlnet/settings").json() == {"control_net_unit_count": 4}


def test_detect_gives_the_preprocessors_maps(site: tuple[TestClient, dict[str, str]]) -> None:
    answer = detect(site, controlnet_processor_res=128, controlnet_threshold_a=50, controlnet_threshold_b=150)
    assert answer.status_code == 200, answer.text
    assert answer.json()["info"] == "Success"
    edges = decoded(answer.json()["images"][0])
    assert edges.size == (128, 128)  # the short side at the processor resolution, as the extension's maps
    assert set(edges.convert("L").getdata()) == {0, 255}
    # Two pictures, the webuiapi name for them, and module none (the picture is the map).
    answer = as_user(site, "POST", "/controlnet/detect", json={"controlnet_module": "none",
                                                               "controlnet_images": [picture(), picture()]})
    assert answer.status_code == 200, answer.text
    maps = [decoded(image).convert("RGB") for image in answer.json()["images"]]
    assert [m.tobytes() for m in maps] == [decoded(picture()).convert("RGB").tobytes()] * 2


@pytest.mark.parametrize(("fields", "field"), [
    ({"controlnet_module": "nope"}, "controlnet_module"),
    ({"controlnet_module": ["canny"]}, "controlnet_module"),
    ({"controlnet_input_images": []}, "controlnet_input_images"),
    ({"controlnet_input_images": ["not base64!"]}, "controlnet_input_images.0"),
    ({"controlnet_input_images": [picture(), base64.b64encode(b"GIF89a no").decode()]}, "controlnet_input_images.1"),
    ({"controlnet_input_images": [big_picture(1024, 1024)]}, "controlnet_input_images.0"),
    # Within the upload limits, but a 4096-wide map per row at resolution 512: 2 gigapixels to process.
    ({"controlnet_input_images": [big_picture(4096, 1)]}, "controlnet_input_images.0"),
    ({"controlnet_input_images": [picture()] * 5}, "controlnet_input_images"),
    ({"controlnet_images": [picture()]}, "controlnet_images"),
    ({"controlnet_processor_res": 10}, "controlnet_processor_res"),
    ({"controlnet_processor_res": "high"}, "controlnet_processor_res"),
    ({"controlnet_threshold_a": 999}, "controlnet_threshold_a"),
    ({"controlnet_threshold_b": -5}, "controlnet_threshold_b"),
])
def test_detect_names_each_bad_field(site: tuple[TestClient, dict[str, str]], fields: dict[str, Any],
                                     field: str) -> None:
    answer = detect(site, **fields)
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["error"] == "ValidationError"
    assert field in [".".join(str(part) for part in d["loc"][1:]) for d in body["detail"]], body
    assert field in body["errors"] or field.split(".")[0] in body["errors"]


def test_detect_of_a_module_without_its_weights_says_what_is_missing(site: tuple[TestClient, dict[str, str]]) -> None:
    answer = detect(site, controlnet_module="softedge_hed")
    assert answer.status_code == 422, answer.text
    assert "hed/ControlNetHED.pth" in answer.json()["errors"]


def test_a_body_over_the_cap_is_refused_before_it_is_read(site: tuple[TestClient, dict[str, str]]) -> None:
    answer = detect(site, controlnet_input_images=["A" * (4 * 1024 * 1024)])
    assert answer.status_code == 413, answer.text
    assert answer.json()["error"] == "RequestTooLarge"


@pytest.mark.parametrize(("method", "path"), CONTROLNET_ROUTES)
def test_every_controlnet_route_needs_a_valid_key(site: tuple[TestClient, dict[str, str]], method: str,
                                                  path: str) -> None:
    client, keys = site
    body = {"json": {"controlnet_module": "none", "controlnet_input_images": [picture()]}} if method == "POST" else {}
    for headers, auth in (({}, None), ({"Authorization": "Bearer atl_not_a_key"}, None),
                          ({"Authorization": f"Bearer {keys['revoked']}"}, None), ({}, ("bob", keys["alice"])),
                          ({}, ("alice", "wrong password"))):
        answer = client.request(method, path, headers=headers, auth=auth, **body)
        assert answer.status_code == 401, (path, headers, answer.text)
        assert answer.json()["error"] == "Unauthorized"
    assert as_user(site, method, path, "bob", **body).status_code == 200


def test_detect_stores_nothing_anyone_could_fetch(site: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = site
    data = client.app.state.services.settings.data_path  # type: ignore[attr-defined]
    temp = Path(os.environ["GRADIO_TEMP_DIR"])

    def files() -> set[Path]:
        return {p for root in (data, temp) for p in root.rglob("*") if p.is_file() and "-journal" not in p.name
                and p.suffix not in (".db", ".sqlite", ".db-wal", ".db-shm")}

    before, jobs = files(), ImageJob.select().count()
    answer = detect(site, "alice")
    assert answer.status_code == 200
    assert files() == before
    assert ImageJob.select().count() == jobs
    # Nothing in the answer names a file or a job for Bob to ask for.
    assert set(answer.json()) == {"images", "info"}


def test_the_refiner_fields_of_txt2img_run_and_are_named_when_bad(site: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = site
    body: dict[str, Any] = {"prompt": "a lighthouse", "width": 64, "height": 64, "steps": 2, "seed": 7,
                            "override_settings": {"sd_model_checkpoint": "tiny-sdxl"}}
    bearer = {"Authorization": f"Bearer {keys['alice']}"}
    plain = client.post("/sdapi/v1/txt2img", json=body, headers=bearer)
    refined = client.post("/sdapi/v1/txt2img", json={**body, "refiner_checkpoint": "tiny-sdxl",
                                                      "refiner_switch_at": 0.5}, headers=bearer)
    assert refined.status_code == 200, refined.text
    info = json.loads(refined.json()["info"])
    assert info["extra_generation_params"]["Refiner switch at"] == "0.5"
    assert info["extra_generation_params"]["Refiner"] == "tiny-sdxl"
    assert pixels(refined) == pixels(plain)  # the base handing over to itself: one schedule, split
    for fields, field in (({"refiner_switch_at": 1.5}, "refiner_switch_at"),
                          ({"refiner_checkpoint": "nope"}, "refiner_checkpoint")):
        answer = client.post("/sdapi/v1/txt2img", json={**body, "refiner_checkpoint": "tiny-sdxl", **fields},
                             headers=bearer)
        assert answer.status_code == 422, answer.text
        assert field in [".".join(str(p) for p in d["loc"][1:]) for d in answer.json()["detail"]]
