"""Image jobs end to end below the UI: stored files, history rows, Stop, failures (a full disk too), recovery."""

from __future__ import annotations

import datetime as dt
import errno
import os
import shutil

import numpy as np
import pytest
from peewee import OperationalError
from PIL import Image

from contracts import InvalidRequest
from services.container import Services
from services.images import JobSnapshot, run_and_collect
from storage import blobs, files
from storage.files import parse_parameters, read_parameters
from storage.models import ImageFile, ImageJob


def test_a_job_stores_pngs_with_parameters_and_a_history_row(services: Services) -> None:
    req = services.images.validate(prompt="a fox", width=64, height=64, steps=3, seed=42, batch_count=2)
    seen: list[str] = []
    snap = run_and_collect(services.images, req, lambda s: seen.append(s.status))
    assert snap.status == "done", snap.message
    assert seen[-1] == "done"
    assert "running" in seen
    info = snap.info
    assert {"job_id", "seed", "width", "height", "steps", "sampler", "model", "duration_s"} <= set(info)
    assert info["seed"] == 42
    assert info["seeds"] == [42, 43]
    assert len(snap.files) == 2
    assert all(p.is_file() for p in snap.files)
    assert parse_parameters(read_parameters(snap.files[1]))["Seed"] == "43"
    job = ImageJob.get_by_id(info["job_id"])
    assert (job.status, job.seed_used, job.steps) == ("done", 42, 3)
    assert job.duration_s > 0
    assert [f.seed for f in job.files.order_by(ImageFile.index)] == [42, 43]


def test_same_seed_twice_gives_identical_files(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    # With the cache on, the second job would hard-link the first one's file and prove nothing.
    monkeypatch.setattr(services.images.cache, "enabled", False)
    req = services.images.validate(prompt="same", width=64, height=64, steps=2, seed=7)
    a = run_and_collect(services.images, req)
    b = run_and_collect(services.images, req)
    assert (a.info["cached"], b.info["cached"]) == (False, False)
    assert not a.files[0].samefile(b.files[0])
    assert np.array_equal(np.asarray(Image.open(a.files[0])), np.asarray(Image.open(b.files[0])))


def test_random_seed_is_reported_and_reproduces(services: Services) -> None:
    a = run_and_collect(services.images, services.images.validate(prompt="r", width=64, height=64, steps=2))
    assert 0 <= a.info["seed"] <= 2**32 - 1
    again = services.images.validate(prompt="r", width=64, height=64, steps=2, seed=a.info["seed"])
    b = run_and_collect(services.images, again)
    assert (a.info["cached"], b.info["cached"]) == (False, False)
    assert np.array_equal(np.asarray(Image.open(a.files[0])), np.asarray(Image.open(b.files[0])))


def test_bad_input_is_refused_with_messages_and_records_nothing(services: Services) -> None:
    before = ImageJob.select().count()
    with pytest.raises(InvalidRequest) as caught:
        services.images.validate(prompt="", width=65, steps="many")
    assert set(caught.value.errors) == {"steps"}  # wrong type is reported first, per field
    errors = services.images.field_errors(prompt="", width=65, steps=5)
    assert set(errors) == {"prompt", "width"}
    assert "multiple of 8" in errors["width"]
    assert ImageJob.select().count() == before


def test_stop_records_a_cancelled_job_with_no_files(services: Services) -> None:
    req = services.images.validate(prompt="long", width=64, height=64, steps=400, seed=1)
    handle = services.images.start(req)
    snap = handle.wait(-1, timeout=30)
    while snap.step < 2:
        assert not snap.finished, snap.message
        snap = handle.wait(snap.version, timeout=30)
    handle.stop()
    while not snap.finished:
        snap = handle.wait(snap.version, timeout=30)
    handle.thread.join(timeout=30)
    assert snap.status == "cancelled"
    assert snap.step < 10  # of 400
    job = ImageJob.get_by_id(snap.job_id)
    assert job.status == "cancelled"
    assert job.files.count() == 0
    # The pipeline is free again at once.
    done = run_and_collect(services.images, services.images.validate(prompt="next", width=64, height=64, steps=1))
    assert done.status == "done"


def no_space(*args: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def assert_failed_and_left_nothing(services: Services, snap: JobSnapshot, reason: str) -> None:
    """The job failed with `reason` in its message; its history row says so, with no file; no file is on disk."""
    assert snap.status == "failed"
    assert reason in snap.message
    assert snap.message.startswith(f"Job {snap.job_id} failed: could not save the images")
    job = services.history.get_job(snap.job_id)
    assert (job["status"], job["files"]) == ("failed", [])
    assert reason in job["error"]
    # An OSError names the file it failed on: the user reads its name, never where the server keeps its data.
    assert str(services.settings.data_path) not in snap.message + snap.error + job["error"]
    images = services.settings.images_dir
    listed = {f.path for f in ImageFile.select()}
    assert {p.relative_to(images).as_posix() for p in images.rglob("*") if p.is_file()
            and p.parent.name != "inputs"} <= listed  # no file of the job, nor half of one, is left
    assert list(images.rglob("*.tmp")) == []


def test_a_full_disk_fails_the_job_clearly_and_leaves_no_file(services: Services,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    real_fsync = os.fsync
    calls: list[int] = []

    def second_fails(fd: int) -> None:  # the first image is written, the second finds the disk full mid-write
        calls.append(fd)
        if len(calls) == 2:
            no_space()
        real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", second_fails)
    req = services.images.validate(prompt="too big", width=64, height=64, steps=1, seed=3, batch_count=2)
    snap = run_and_collect(services.images, req)
    assert len(calls) == 2
    assert_failed_and_left_nothing(services, snap, "No space left on device")


def test_a_file_where_the_day_folder_belongs_fails_the_job_clearly(services: Services) -> None:
    blocker = services.settings.images_dir / dt.date.today().isoformat()
    if blocker.is_dir():
        shutil.rmtree(blocker)
    blocker.write_text("not a folder")
    try:
        snap = run_and_collect(services.images, services.images.validate(prompt="nowhere", width=64, height=64,
                                                                         steps=1))
    finally:
        blocker.unlink()
    assert_failed_and_left_nothing(services, snap, "FileExistsError")


def test_a_failed_database_write_fails_the_job_and_removes_its_files(services: Services,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(**row: object) -> None:
        raise OperationalError("database or disk is full")

    monkeypatch.setattr(ImageFile, "create", disk_full)
    snap = run_and_collect(services.images, services.images.validate(prompt="unrecorded", width=64, height=64,
                                                                     steps=1))
    assert_failed_and_left_nothing(services, snap, "OperationalError: database or disk is full")


def test_a_cached_answer_that_cannot_be_saved_fails_clearly(services: Services,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    req = services.images.validate(prompt="cached", width=64, height=64, steps=1, seed=11)
    assert run_and_collect(services.images, req).status == "done"
    monkeypatch.setattr(blobs.os, "link", no_space)
    monkeypatch.setattr(blobs.shutil, "copyfile", no_space)
    snap = run_and_collect(services.images, req)
    assert ImageJob.get_by_id(snap.job_id).cached  # the failure came from the cache path
    assert_failed_and_left_nothing(services, snap, "No space left on device")
