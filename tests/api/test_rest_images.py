"""/api/images/{id} on every store: the local file, an S3 object streamed through the app, or a redirect to a
short-lived presigned URL that moto's server answers with the same bytes. Owner checks hold on all three. And the
UI, which Gradio feeds from local files, shows an S3 image with the stored bytes."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from gradio_client import Client
from PIL import Image

from api.server import create_app
from services.accounts import AccountService
from storage import blobs
from storage.db import open_database
from storage.files import parse_parameters
from tests.server import serve
from tests.services.conftest import tiny_settings

if TYPE_CHECKING:
    from tests.live.s3 import MotoS3

PASSWORD = "correct horse battery"
ALICE = ("alice", PASSWORD)


@pytest.fixture(params=["local", "s3", "s3-presign"])
def app(request: pytest.FixtureRequest, tmp_path: Path, tiny_sd_dir: Path, monkeypatch: pytest.MonkeyPatch) -> FastAPI:
    monkeypatch.setattr(blobs, "CHUNK", 1024)  # a PNG of 64x64 streams in several chunks, as a big one would
    overrides: dict[str, Any] = {}
    if request.param != "local":
        server = request.getfixturevalue("s3_server")
        overrides = {**server.settings(server.create_bucket()), "s3_presign": request.param == "s3-presign",
                     "s3_presign_ttl_s": 120}
    settings = tiny_settings(tmp_path, tiny_sd_dir, **overrides)
    settings.ensure_dirs()
    open_database(settings.db_path)
    for name in ("alice", "bob"):
        AccountService().add(name, PASSWORD)
    return create_app(settings)


def alices_image(app: FastAPI) -> tuple[int, int, bytes]:
    """Run one job as alice; (job id, file id, the stored bytes)."""
    services = app.state.services
    snap = services.images.run(services.images.validate(prompt="fetched", width=64, height=64, steps=1, seed=4),
                               user="alice")
    assert snap.status == "done", snap.message
    file = services.history.get_job(snap.job_id, user="alice")["files"][0]
    blob = services.history.store.open(file["file"])
    return snap.job_id, file["id"], b"".join(blob.chunks)


def test_an_image_is_served_to_its_owner_only(app: FastAPI) -> None:
    job_id, file_id, stored = alices_image(app)
    http = TestClient(app, follow_redirects=False)
    answer = http.get(f"/api/images/{file_id}", auth=ALICE)
    settings = app.state.services.settings
    if settings.s3_presign:
        assert answer.status_code == 307
        assert answer.headers["cache-control"] == "private, no-store"
        url = answer.headers["location"]
        assert url.startswith(f"{settings.s3_endpoint_url}/")
        assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == ["120"]
        fetched = httpx.get(url, timeout=10)  # no credentials: the signature is the permission
        assert fetched.status_code == 200
        assert fetched.content == stored
    else:
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "image/png"
        assert answer.headers["content-length"] == str(len(stored))
        assert answer.content == stored
    assert b"parameters" in stored  # the PNG's text chunk travelled with it
    assert http.get(f"/api/images/{file_id}", auth=("bob", PASSWORD)).status_code == 404
    assert http.get(f"/api/images/{file_id}").status_code == 401
    assert app.state.services.history.delete_job(job_id, user="alice")
    assert http.get(f"/api/images/{file_id}", auth=ALICE).status_code == 404


def test_an_object_missing_from_the_store_is_a_404(app: FastAPI) -> None:
    _, file_id, _ = alices_image(app)
    services = app.state.services
    key = services.history.image_key(file_id, "alice")
    services.history.store.delete(key)  # gone behind the database's back (a bucket lifecycle rule, a manual rm)
    answer = TestClient(app, follow_redirects=False).get(f"/api/images/{file_id}", auth=ALICE)
    assert answer.status_code == 404
    assert answer.json()["detail"] == f"image {file_id} does not exist."


def test_the_ui_shows_an_s3_image_from_its_local_copy_with_its_parameters(s3_server: MotoS3, tmp_path: Path,
                                                                           tiny_sd_dir: Path) -> None:
    bucket = s3_server.create_bucket()
    settings = tiny_settings(tmp_path, tiny_sd_dir, **s3_server.settings(bucket, prefix="team"))
    with serve(settings) as url:
        client = Client(url, verbose=False, download_files=False)
        _, _, gallery, info = client.predict(prompt="from the bucket", negative_prompt="", width=64, height=64,
                                             steps=1, cfg_scale=7.0, seed=8, sampler="Euler a", batch_count=1,
                                             api_name="/generate_image")
    (item,) = gallery
    shown = Path(item["image"]["path"]).read_bytes()  # Gradio's copy of the local file it was given
    (key,) = info["files"]
    assert s3_server.keys(bucket) == [f"team/{key}"]
    stored = s3_server.client().get_object(Bucket=bucket, Key=f"team/{key}")["Body"].read()
    assert shown == stored
    with Image.open(io.BytesIO(stored)) as image:
        assert parse_parameters(image.info["parameters"])["Seed"] == "8"
