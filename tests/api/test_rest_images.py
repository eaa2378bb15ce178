"""/api/images/{id} on every store: the local file, an S3 object streamed through the app, or a redirect to a
short-lived presigned URL that moto's server answers with the same bytes. Owner checks hold on all three."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app import create_app
from services.accounts import AccountService
from storage.db import open_database
from tests.services.conftest import tiny_settings

PASSWORD = "correct horse battery"
ALICE = ("alice", PASSWORD)


@pytest.fixture(params=["local", "s3", "s3-presign"])
def app(request: pytest.FixtureRequest, tmp_path: Path, tiny_sd_dir: Path) -> FastAPI:
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
