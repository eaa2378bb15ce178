"""Start-up wiring: a model that cannot load leaves the server up and says why; crashes are recovered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from services.container import CannotStart, Services, build_services
from services.images import run_and_collect
from settings import Settings
from storage.db import leave_replicas
from storage.models import Conversation, ImageJob, Message, ReplyDraft
from tests.services.conftest import tiny_settings


def test_an_unavailable_model_fails_the_job_with_the_reason(tmp_path: Path, tiny_sd_dir: Path) -> None:
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "model_index.json").write_text("{}")
    services = build_services(tiny_settings(tmp_path / "data", tiny_sd_dir, image_model=str(broken)))
    snap = run_and_collect(services.images, services.images.validate(prompt="x", width=64, height=64, steps=1))
    assert snap.status == "failed"
    assert "--profile tiny" in snap.error
    job = ImageJob.get_by_id(snap.job_id)
    assert job.status == "failed"
    assert "--profile tiny" in job.error
    health = services.health()["models"]["image"]
    assert health["state"] == "failed"
    assert "--image-model" in health["reason"]
    # The configured folder is named by its name, in the reason and as the model, never by its absolute path.
    assert "'…/broken-model'" in health["reason"]
    assert health["model"] == job.model == "broken-model"
    shown = [snap.error, job.error, health["reason"], services.image_slot.status().message()]
    assert not any(str(tmp_path) in text for text in shown)


def test_recover_marks_interrupted_jobs_failed_and_drops_temp_files(tmp_path: Path, tiny_sd_dir: Path,
                                                                    db_location: Path | str) -> None:
    url = db_location if isinstance(db_location, str) else ""  # "": SQLite in the data dir
    settings = tiny_settings(tmp_path / "data", tiny_sd_dir, database_url=url)
    services = build_services(settings)
    job = ImageJob.create(user="", backend="diffusers", model="m", prompt="p", width=64, height=64, steps=1,
                          cfg_scale=7, seed=1, sampler="Euler", status="running")
    stale = settings.images_dir / "2026-01-01" / ".000001-0-1-abc.tmp"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half")
    assert services.images.recover() == 1
    assert ImageJob.get_by_id(job.id).status == "failed"
    assert "interrupted" in ImageJob.get_by_id(job.id).error
    assert not stale.exists()


def test_the_batch_size_follows_the_profile_the_memory_mode_and_the_backend(tmp_path: Path) -> None:
    assert Settings(profile="tiny", data_dir=tmp_path).resolved_max_batch_images == 1
    assert Settings(profile="gpu", data_dir=tmp_path).resolved_max_batch_images == 1  # until measured on a GPU
    assert Settings(profile="gpu", data_dir=tmp_path, memory_mode="sequential-offload",
                    max_batch_images=4).resolved_max_batch_images == 4  # an explicit setting wins
    assert Settings(profile="gpu", data_dir=tmp_path, image_backend="a1111").resolved_max_batch_images == 1
    assert Settings(profile="tiny", data_dir=tmp_path, max_batch_images=8).resolved_max_batch_images == 8


def test_without_batching_jobs_wait_in_gradios_queue_one_at_a_time(tmp_path: Path) -> None:
    from contracts import ImageLimits
    from services.images import ImageService

    def concurrency(max_batch_images: int) -> int:
        return ImageService(None, tmp_path, ImageLimits(), max_batch_images=max_batch_images).concurrency  # type: ignore[arg-type]

    # One at a time: the others wait in Gradio's queue, which shows each its place (react-client e2e test).
    assert concurrency(1) == 1
    # Batching: enough jobs in to fill the running batch and gather the next one.
    assert concurrency(4) == 8
    assert concurrency(2) == 4


def test_a_replica_starting_beside_running_ones_leaves_their_work_alone(tmp_path: Path, tiny_sd_dir: Path,
                                                                       postgres_url: str) -> None:
    """What is unfinished when a replica starts may be another replica's work under way: only a replica that starts
    alone turns it into failures."""
    build_services(tiny_settings(tmp_path / "a", tiny_sd_dir, database_url=postgres_url))  # replica A runs
    job = ImageJob.create(user="", backend="diffusers", model="m", prompt="p", width=64, height=64, steps=1,
                          cfg_scale=7, seed=1, sampler="Euler", status="running")  # A's job, under way
    build_services(tiny_settings(tmp_path / "b", tiny_sd_dir, database_url=postgres_url))  # replica B joins
    assert ImageJob.get_by_id(job.id).status == "running"
    leave_replicas()  # both stop (a crash or a kill does the same: PostgreSQL drops their connections)
    build_services(tiny_settings(tmp_path / "c", tiny_sd_dir, database_url=postgres_url))  # C starts alone
    assert ImageJob.get_by_id(job.id).status == "failed"
    leave_replicas()


def test_a_replica_restarting_beside_running_ones_recovers_its_own_work_only(tmp_path: Path, tiny_sd_dir: Path,
                                                                            postgres_url: str) -> None:
    """A replica that crashed and restarts while others run marks what it left unfinished (by its name) as failed,
    and leaves the others' work alone."""
    def replica(name: str) -> Services:
        return build_services(tiny_settings(tmp_path / name, tiny_sd_dir, database_url=postgres_url,
                                            replica_name=name))

    def running_job(owner: str) -> ImageJob:
        return ImageJob.create(user="", backend="diffusers", model="m", prompt="p", width=64, height=64, steps=1,
                               cfg_scale=7, seed=1, sampler="Euler", status="running", replica=owner)

    replica("a")
    b = replica("b")
    conversation = Conversation.create(user="", title="t")
    question = Message.create(conversation=conversation, position=0, role="user", content="hi")
    mine, theirs = running_job("a"), running_job("b")
    ReplyDraft.create(conversation=conversation, answers=question, mode="send", content="partial", replica="a")
    ReplyDraft.create(conversation=conversation, answers=question, mode="send", content="theirs", replica="b")
    assert b.images.replica == "b"
    replica("a")  # a's process died; its restart joins b, which keeps running
    assert ImageJob.get_by_id(mine.id).status == "failed"
    assert ImageJob.get_by_id(theirs.id).status == "running"
    kept = Message.get(Message.conversation == conversation, Message.position == 1)
    assert (kept.status, kept.content) == ("failed", "partial")  # a's cut reply, with its text
    assert [d.replica for d in ReplyDraft.select()] == ["b"]  # b's reply is still streaming
    leave_replicas()


def hold_replica_name(postgres_url: str, name: str) -> Any:
    """A connection holding `name`'s lock, as the process of a replica of that name does while it runs."""
    import psycopg

    from storage.db import REPLICA_NAME_CLASS, _name_key

    connection = psycopg.connect(postgres_url, autocommit=True)
    connection.execute("SELECT pg_advisory_lock(%s, %s)", (REPLICA_NAME_CLASS, _name_key(name)))
    return connection


def test_a_replica_that_never_comes_back_has_its_work_recovered_by_the_others_sweep(
        tmp_path: Path, tiny_sd_dir: Path, postgres_url: str) -> None:
    """A replica that dies for good leaves its jobs and replies "running"; a running replica's periodic sweep sees
    that nobody holds its name any more and records its work as interrupted, and leaves live replicas' work alone."""
    b = build_services(tiny_settings(tmp_path / "b", tiny_sd_dir, database_url=postgres_url, replica_name="b"))
    ghost = hold_replica_name(postgres_url, "ghost")  # replica "ghost" runs in another process

    def running_job(owner: str) -> ImageJob:
        return ImageJob.create(user="", backend="diffusers", model="m", prompt="p", width=64, height=64, steps=1,
                               cfg_scale=7, seed=1, sampler="Euler", status="running", replica=owner)

    conversation = Conversation.create(user="", title="t")
    question = Message.create(conversation=conversation, position=0, role="user", content="hi")
    gone_job, live_job = running_job("ghost"), running_job("b")
    ReplyDraft.create(conversation=conversation, answers=question, mode="send", content="partial", replica="ghost")
    assert b.replicas.sweep() == {}  # ghost still runs: its work may be under way
    assert ImageJob.get_by_id(gone_job.id).status == "running"
    ghost.close()  # its process dies: PostgreSQL drops the connection and the lock
    assert b.replicas.sweep() == {"ghost": 2}
    job = ImageJob.get_by_id(gone_job.id)
    assert (job.status, job.error) == ("failed", "interrupted: the server stopped while this job ran")
    kept = Message.get(Message.conversation == conversation, Message.position == 1)
    assert (kept.status, kept.content) == ("failed", "partial")
    assert ImageJob.get_by_id(live_job.id).status == "running"  # b's own job, under way
    assert not ReplyDraft.select().exists()
    assert b.replicas.sweep() == {}  # nothing of ghost's is left running
    assert b.health()["replica_watch"] == {"sweep_s": 30, "recovered": {"ghost": 2}}
    leave_replicas()


def test_the_watch_sweeps_by_itself_once_started(tmp_path: Path, tiny_sd_dir: Path, postgres_url: str) -> None:
    import time

    from services.replicas import ReplicaWatch
    from storage.connections import database

    b = build_services(tiny_settings(tmp_path / "b", tiny_sd_dir, database_url=postgres_url, replica_name="b"))
    ghost = hold_replica_name(postgres_url, "ghost")
    job = ImageJob.create(user="", backend="diffusers", model="m", prompt="p", width=64, height=64, steps=1,
                          cfg_scale=7, seed=1, sampler="Euler", status="running", replica="ghost")
    watch = ReplicaWatch(database.obj, b.images, b.chat, interval_s=0.05)
    watch.start()
    ghost.close()
    deadline = time.monotonic() + 30
    while ImageJob.get_by_id(job.id).status == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    watch.stop()
    assert ImageJob.get_by_id(job.id).status == "failed"
    assert watch.describe()["recovered"] == {"ghost": 1}
    leave_replicas()


def test_a_second_replica_with_a_running_replicas_name_is_refused(tmp_path: Path, tiny_sd_dir: Path,
                                                                  postgres_url: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Two replicas of one name would recover each other's work as their own: the second one does not start."""
    import storage.db
    from storage.db import ReplicaNameTaken

    monkeypatch.setattr(storage.db, "NAME_WAIT_S", 1.0)
    other = hold_replica_name(postgres_url, "twin")
    with pytest.raises(CannotStart, match="ATELIER_REPLICA_NAME") as refused:  # the server's start says why and stops
        build_services(tiny_settings(tmp_path / "a", tiny_sd_dir, database_url=postgres_url, replica_name="twin"))
    assert isinstance(refused.value.__cause__, ReplicaNameTaken)
    other.close()
    build_services(tiny_settings(tmp_path / "b", tiny_sd_dir, database_url=postgres_url, replica_name="twin"))
    leave_replicas()


def test_torch_threads_follow_the_profile_and_the_usable_cores(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import settings as settings_module

    monkeypatch.setattr(settings_module, "usable_cores", lambda: 8)
    assert Settings(profile="tiny", data_dir=tmp_path).resolved_torch_threads == 1
    assert Settings(profile="cpu", data_dir=tmp_path).resolved_torch_threads == 4
    assert Settings(profile="gpu", data_dir=tmp_path).resolved_torch_threads == 4
    assert Settings(profile="cpu", data_dir=tmp_path, torch_threads=3).resolved_torch_threads == 3  # setting wins
    monkeypatch.setattr(settings_module, "usable_cores", lambda: 1)
    assert Settings(profile="cpu", data_dir=tmp_path).resolved_torch_threads == 1  # never 0


@pytest.mark.parametrize("bad", [0, -1, "many", 4096])
def test_a_bad_torch_thread_count_is_refused_with_its_name(tmp_path: Path, bad: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATELIER_TORCH_THREADS", str(bad))
    with pytest.raises(ValidationError, match="torch_threads"):
        Settings(profile="tiny", data_dir=tmp_path)


def test_torch_threads_are_applied_before_a_model_is_built_and_reported_in_health(tmp_path: Path) -> None:
    import torch

    before = torch.get_num_threads()
    try:
        for wanted in (2, 1):
            torch.set_num_threads(7)
            services = build_services(Settings(profile="tiny", data_dir=tmp_path / str(wanted), warmup=False,
                                               torch_threads=wanted, torch_interop_threads=1))
            assert services.health()["torch_threads"] == {"intra_op": wanted, "inter_op": 1}  # asked for
            assert services.image_slot.backend.model_name  # the first backend is built: threads set first
            assert torch.get_num_threads() == wanted
            reported = services.health()["torch_threads"]
            assert reported == {"intra_op": wanted, "inter_op": torch.get_num_interop_threads()}  # in effect
    finally:
        torch.set_num_threads(before)


def test_previews_are_computed_no_more_often_than_the_ui_streams_them(tmp_path: Path) -> None:
    from services.container import _image_slot

    backend = _image_slot(Settings(profile="tiny", data_dir=tmp_path, stream_interval_s=0.4)).backend
    assert (backend.runner.preview_every, backend.runner.preview_interval_s) == (2, 0.4)
    unthrottled = _image_slot(Settings(profile="tiny", data_dir=tmp_path, stream_interval_s=0)).backend
    assert unthrottled.runner.preview_interval_s == 0


def test_torchs_gpu_build_is_read_without_importing_it_and_agrees_with_torch() -> None:
    import torch

    from settings import cuda_available, torch_build_gpus

    expected = tuple(name for name in ("cuda", "hip") if getattr(torch.version, name))
    assert torch_build_gpus() == expected
    assert cuda_available() == torch.cuda.is_available()
