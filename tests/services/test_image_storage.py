"""Image files through the store, on the local folder and on S3 (moto's server on loopback): where they land, that
they carry their parameters, that no failure leaves a partial or orphaned object or a listed job without its
images, and that deleting a job keeps the images of the cache hits that copied it."""

from __future__ import annotations

import datetime as dt
import errno
import io
import os
import re
from pathlib import Path
from typing import Any

import pytest
from peewee import OperationalError
from PIL import Image

from services.container import Services, build_services
from services.images import run_and_collect
from storage import files
from storage.blobs import S3Store
from storage.files import parse_parameters
from storage.models import ImageFile
from tests.services.conftest import tiny_settings


@pytest.fixture(scope="module", params=["local", "s3"])
def services(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_sd_dir: Path) -> Services:
    """The same services over the local images folder, then over a fresh bucket."""
    overrides: dict[str, Any] = {}
    if request.param == "s3":
        server = request.getfixturevalue("s3_server")
        overrides = server.settings(server.create_bucket())
    return build_services(tiny_settings(tmp_path_factory.mktemp("data"), tiny_sd_dir, **overrides))


def stored_keys(services: Services) -> set[str]:
    """Every name in the store, looked at from outside the store (half-written local files included)."""
    store = services.images.store
    if isinstance(store, S3Store):
        prefix = f"{store.location.prefix}/"
        pages = store.client.get_paginator("list_objects_v2").paginate(Bucket=store.location.bucket)
        return {obj["Key"].removeprefix(prefix) for page in pages for obj in page.get("Contents", [])}
    root = services.settings.images_dir
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def local_names(services: Services) -> set[str]:
    """Files in the folder Gradio is given paths in (the images folder, or the S3 store's local cache)."""
    root = services.settings.image_cache_dir if services.settings.storage_url else services.settings.images_dir
    return {p.name for p in root.rglob("*") if p.is_file()}


def stored_bytes(services: Services, key: str) -> bytes:
    blob = services.images.store.open(key)
    assert blob is not None, key
    data = b"".join(blob.chunks)
    assert len(data) == blob.size
    return data


def job_keys(services: Services, job_id: int) -> list[str]:
    return [f.path for f in ImageFile.select().where(ImageFile.job == job_id).order_by(ImageFile.index)]


def assert_every_listed_image_is_stored(services: Services) -> None:
    keys = stored_keys(services)
    for job in services.history.list_jobs(user=None, limit=200)["jobs"]:
        assert {f["file"] for f in job["files"]} <= keys, job


def assert_no_orphan_files(services: Services) -> None:
    """Every image file in the folder Gradio is given paths in is one a history row lists (inputs aside)."""
    listed = {Path(f.path).name for f in ImageFile.select()}
    assert {name for name in local_names(services) if not re.fullmatch("[0-9a-f]{64}[.]png", name)} <= listed


def test_a_job_is_stored_under_todays_folder_with_names_that_tell_nothing_and_its_parameters(
        services: Services) -> None:
    req = services.images.validate(prompt="a stored fox", width=64, height=64, steps=1, seed=42, batch_count=2)
    snap = run_and_collect(services.images, req)
    assert snap.status == "done", snap.message
    day = dt.date.today().isoformat()
    names = job_keys(services, snap.job_id)
    # 128 random bits each: not the job's number (how many jobs others ran), not the seed.
    assert all(re.fullmatch(f"{day}/[0-9a-f]{{32}}[.]png", name) for name in names), names
    assert len(set(names)) == 2
    assert set(names) <= stored_keys(services)
    if not services.settings.storage_url:  # the local layout is today's, byte for byte
        assert snap.files == [services.settings.images_dir / name for name in names]
    else:
        bucket = services.images.store.location.bucket
        head = services.images.store.client.head_object(Bucket=bucket, Key=f"atelier/{names[1]}")
        assert head["ContentType"] == "image/png"
    data = stored_bytes(services, names[1])
    with Image.open(io.BytesIO(data)) as image:
        assert parse_parameters(image.info["parameters"])["Seed"] == "43"
    # Gradio gets local files with the very bytes stored.
    assert [p.read_bytes() for p in snap.files] == [stored_bytes(services, name) for name in names]


def test_a_failed_commit_leaves_no_object_and_no_listed_job_without_images(services: Services,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    before = stored_keys(services)

    def disk_full(**row: object) -> None:
        raise OperationalError("database or disk is full")

    monkeypatch.setattr(ImageFile, "create", disk_full)
    req = services.images.validate(prompt="uploaded, never committed", width=64, height=64, steps=1, seed=5,
                                   batch_count=2)
    snap = run_and_collect(services.images, req)
    assert snap.status == "failed"
    assert "database or disk is full" in snap.message
    assert stored_keys(services) == before  # both uploads were removed again
    assert_no_orphan_files(services)
    assert_every_listed_image_is_stored(services)


def test_a_write_that_fails_midway_leaves_nothing(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    before = stored_keys(services)
    store = services.images.store
    calls: list[object] = []
    if isinstance(store, S3Store):
        real_upload = store.client.upload_file

        def upload_then_time_out(*args: Any, **kwargs: Any) -> None:
            # The second upload reaches the bucket, then its answer is lost: the object exists, the caller
            # sees an error.
            calls.append(args)
            real_upload(*args, **kwargs)
            if len(calls) == 2:
                raise TimeoutError("read timed out")

        monkeypatch.setattr(store.client, "upload_file", upload_then_time_out)
        reason = "read timed out"
    else:
        real_fsync = os.fsync

        def second_fails(fd: int) -> None:
            calls.append(fd)
            if len(calls) == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
            real_fsync(fd)

        monkeypatch.setattr(files.os, "fsync", second_fails)
        reason = "No space left on device"
    req = services.images.validate(prompt="half written", width=64, height=64, steps=1, seed=6, batch_count=2)
    snap = run_and_collect(services.images, req)
    assert len(calls) == 2
    assert snap.status == "failed"
    assert reason in snap.message
    assert services.history.get_job(snap.job_id)["files"] == []
    assert stored_keys(services) == before
    assert_no_orphan_files(services)  # half-written temp files (".<name>-….tmp") included


def test_deleting_a_job_removes_its_images_but_not_a_cache_hits_copy(services: Services) -> None:
    req = services.images.validate(prompt="copied by the cache", width=64, height=64, steps=1, seed=9)
    first = run_and_collect(services.images, req)
    second = run_and_collect(services.images, req)
    assert (first.info["cached"], second.info["cached"]) == (False, True)
    [original] = job_keys(services, first.job_id)
    [copy] = job_keys(services, second.job_id)
    data = stored_bytes(services, original)
    assert services.history.delete_job(first.job_id)
    keys = stored_keys(services)
    assert original not in keys
    assert not services.history.file_path(original).exists()
    assert copy in keys
    assert stored_bytes(services, copy) == data
    assert services.history.file_path(copy).read_bytes() == data
    file_id = services.history.get_job(second.job_id)["files"][0]["id"]
    assert services.history.image_key(file_id) == copy
    assert_every_listed_image_is_stored(services)


def test_recovery_removes_half_written_files_and_keeps_finished_ones(services: Services) -> None:
    snap = run_and_collect(services.images, services.images.validate(prompt="kept", width=64, height=64, steps=1,
                                                                     seed=12))
    [key] = job_keys(services, snap.job_id)
    local = services.history.file_path(key)
    leftover = local.parent / f".{local.stem}-x1y2.tmp"  # what write_png_atomic leaves when the process dies
    leftover.write_bytes(b"\x89PNG half")
    services.images.recover()
    assert not leftover.exists()
    assert local.is_file()
    assert key in stored_keys(services)
