"""SDXL and ControlNet through the named Gradio API of a live tiny server with two accounts: tiny-sdxl offered and
run, ControlNet units run, written into the PNG and read back by /png_info, bad units refused naming the field, and
/controlnet_preview, which only takes the caller's own uploads."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError, ValidationError
from PIL import Image

from services.accounts import AccountService
from storage.db import open_database
from storage.files import read_parameters
from tests.server import serve
from tests.services.conftest import tiny_settings

PASSWORD = "correct horse battery"
GRADIO = "/gradio_api"
JOB: dict[str, Any] = {"prompt": "a lighthouse", "negative_prompt": "", "width": 64, "height": 64, "steps": 2,
                       "cfg_scale": 7.0, "seed": 4, "sampler": "Euler a", "batch_count": 1}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_sd_dir: Path, tiny_sdxl_dir: Path, tiny_cn_sd15: Path,
           tiny_cn_sdxl: Path) -> Iterator[str]:
    settings = tiny_settings(tmp_path_factory.mktemp("data"), tiny_sd_dir, tiny_sdxl_dir=tiny_sdxl_dir,
                             controlnets={"tiny-cn-sd15": tiny_cn_sd15, "tiny-cn-sdxl": tiny_cn_sdxl},
                             cache_enabled=False, limit_image_jobs="1000/minute", limit_uploads="1000/minute",
                             limit_reads="1000/minute")
    settings.ensure_dirs()
    open_database(settings.db_path)
    for name in ("alice", "bob"):
        AccountService().add(name, PASSWORD)
    with serve(settings) as url:
        yield url


@pytest.fixture(scope="module")
def alice(server: str) -> Client:
    return Client(server, auth=("alice", PASSWORD), verbose=False, download_files=False)


def square_png(tmp: Path | None = None) -> bytes:
    image = Image.new("RGB", (64, 64), (40, 90, 200))
    image.paste((250, 240, 10), (16, 16, 48, 48))
    out = io.BytesIO()
    image.save(out, format="PNG")
    if tmp is not None:
        tmp.write_bytes(out.getvalue())
    return out.getvalue()


def unit(**fields: Any) -> dict[str, Any]:
    return {"image": base64.b64encode(square_png()).decode(), "module": "canny", "model": "tiny-cn-sd15", **fields}


def run(client: Client, **params: Any) -> tuple[list[Any], dict[str, Any]]:
    *_, gallery, info = client.submit(**{**JOB, **params}, api_name="/generate_image").result(timeout=300)
    return gallery, info


def test_the_models_list_offers_tiny_sdxl_its_controlnets_and_the_modules(alice: Client) -> None:
    listed = alice.predict(api_name="/models")
    assert {"tiny-sd", "tiny-sdxl"} <= set(listed["models"])
    assert [name.split(" [")[0] for name in listed["controlnets"]] == ["tiny-cn-sd15", "tiny-cn-sdxl"]
    assert {"none", "canny", "hed"} <= set(listed["module_list"])  # the extension's /module_list names
    assert listed["module_detail"]["canny"]["sliders"][1]["name"] == "Low Threshold"
    # Each checkpoint's and ControlNet's family, so that a client offers the ControlNets that fit the checkpoint.
    families = listed["families"]
    assert families["models"]["tiny-sd"] == "sd15"
    assert families["models"]["tiny-sdxl"] == "sdxl"
    assert families["default"] == "sd15"
    assert {name.split(" [")[0]: f for name, f in families["controlnets"].items()} == {"tiny-cn-sd15": "sd15",
                                                                                      "tiny-cn-sdxl": "sdxl"}


def test_sdxl_and_a_controlnet_unit_through_the_api_and_back_through_png_info(alice: Client) -> None:
    _, info = run(alice, model="tiny-sdxl")
    assert info["checkpoint"] == "tiny-sdxl"
    plain, _ = run(alice)
    controlled, info = run(alice, controlnet=[unit()])
    assert info["controlnet"][0]["module"] == "canny"
    text = read_parameters(Path(controlled[0]["image"]["path"]))
    assert 'ControlNet 0: "Module: canny, Model: tiny-cn-sd15 [' in text
    assert Image.open(controlled[0]["image"]["path"]).tobytes() != Image.open(plain[0]["image"]["path"]).tobytes()
    read = alice.predict(handle_file(controlled[0]["image"]["path"]), api_name="/png_info")
    assert read["controlnet"][0]["model"].startswith("tiny-cn-sd15 [")


@pytest.mark.parametrize(("fields", "words"), [
    ({"weight": 5}, "weight must be between 0 and 2"),
    ({"guidance_start": 0.9, "guidance_end": 0.1}, "must not be after guidance_end"),
    ({"module": "nope"}, "unknown ControlNet module 'nope'"),
    ({"model": "tiny-cn-sdxl"}, "is a ControlNet for SDXL; the checkpoint is Stable Diffusion 1.x"),
    ({"image": base64.b64encode(b"not a picture").decode()}, "controlnet.0.image"),
])
def test_a_bad_unit_is_refused_before_it_is_queued(alice: Client, fields: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError, match=words.replace("(", r"\(").replace("[", r"\[")):
        run(alice, controlnet=[unit(**fields)])


def test_the_preview_gives_the_map_and_takes_only_ones_own_upload(server: str, alice: Client,
                                                                 tmp_path: Path) -> None:
    picture = tmp_path / "square.png"
    square_png(picture)
    answer = alice.predict(handle_file(str(picture)), "canny", 64, 64, -1, -1, -1, False, "Crop and Resize",
                             api_name="/controlnet_preview")
    detected = Image.open(io.BytesIO(base64.b64decode(answer["image"].split(",", 1)[1])))
    assert (answer["width"], answer["height"]) == (64, 64)
    assert detected.size == (64, 64)
    assert set(detected.convert("L").getdata()) == {0, 255}  # canny: edges on black
    with pytest.raises(AppError, match="unknown ControlNet module"):
        alice.predict(handle_file(str(picture)), "nope", 64, 64, -1, -1, -1, False, "Crop and Resize",
                      api_name="/controlnet_preview")
    sessions = {}
    for name in ("alice", "bob"):
        http = httpx.Client(base_url=server, timeout=30)
        assert http.post("/login", data={"username": name, "password": PASSWORD}).status_code == 200
        sessions[name] = http
    uploaded = sessions["alice"].post(f"{GRADIO}/upload", files={"files": ("mine.png", square_png())}).json()[0]
    image = {"path": uploaded, "meta": {"_type": "gradio.FileData"}}
    body = {"data": [image, "canny", 64, 64, -1, -1, -1, False, "Crop and Resize"]}
    refused = sessions["bob"].post(f"{GRADIO}/call/controlnet_preview", json=body)
    assert refused.status_code == 422, refused.text
    assert "not one you uploaded or were sent" in refused.json()["detail"]
    assert httpx.post(f"{server.rstrip('/')}{GRADIO}/call/controlnet_preview", json=body).status_code in (401, 403)
    assert sessions["alice"].post(f"{GRADIO}/call/controlnet_preview", json=body).status_code == 200
