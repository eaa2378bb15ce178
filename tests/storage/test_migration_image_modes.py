"""Migration 005 (image modes): jobs recorded before it keep their rows and files and read back as txt2img jobs."""

from __future__ import annotations

from pathlib import Path

from peewee import SqliteDatabase

from storage.connections import PRAGMAS, database
from storage.db import open_database
from storage.migrations import MIGRATIONS, applied, m005_image_modes, migrate
from storage.models import ImageFile, ImageJob

BEFORE = [(name, step) for name, step in MIGRATIONS if name < "005"]


def _old_database(path: Path) -> SqliteDatabase:
    """A database as the release before issue 13 left it, with one finished job and its file."""
    db = SqliteDatabase(str(path), pragmas=PRAGMAS, lock_type="IMMEDIATE")
    db.connect()
    migrate(db, BEFORE)
    db.execute_sql(
        "INSERT INTO imagejob (user, created_at, backend, model, prompt, width, height, steps, cfg_scale, seed, "
        "sampler, status) VALUES ('ann', '2026-01-01 00:00:00', 'diffusers', 'sd', 'a fox', 64, 64, 3, 7.0, 42, "
        "'Euler a', 'done')")
    db.execute_sql("INSERT INTO imagefile (job_id, \"index\", path, seed, width, height) "
                   "VALUES (1, 0, '2026-01-01/000001-0-42.png', 42, 64, 64)")
    return db


def test_old_jobs_keep_their_files_and_read_as_txt2img_with_a1111_defaults(tmp_path: Path) -> None:
    _old_database(tmp_path / "a.db").close()
    db = open_database(tmp_path / "a.db")  # applies 005 and what follows
    assert "005_image_modes" in applied(db)
    job = ImageJob.get_by_id(1)
    # A table rebuild inside the migration's transaction would have cascade-deleted this row.
    assert [f.path for f in job.files] == ["2026-01-01/000001-0-42.png"]
    settings = job.settings_dict()
    assert settings["mode"] == "txt2img"
    assert (settings["init_image"], settings["mask"]) == ("", "")
    assert settings["denoising_strength"] == 0.75
    assert (settings["mask_blur"], settings["inpainting_fill"], settings["inpaint_full_res_padding"]) == (4, 1, 32)
    assert (settings["inpaint_full_res"], settings["enable_hr"]) == (False, False)
    assert (settings["hr_scale"], settings["hr_upscaler"], settings["hr_second_pass_steps"]) == (2.0, "Latent", 0)
    assert (settings["checkpoint"], settings["vae"]) == ("", "")


def test_new_columns_store_and_read_back(tmp_path: Path) -> None:
    open_database(tmp_path / "a.db")
    job = ImageJob.create(backend="fake", model="m", prompt="p", width=64, height=64, steps=2, cfg_scale=7, seed=1,
                          sampler="Euler a", mode="inpaint", init_image_sha="ab" * 32, mask_sha="cd" * 32,
                          denoising_strength=0.4, inpaint_full_res=True, enable_hr=False, hr_scale=1.5,
                          checkpoint="dream.safetensors", vae="vae-ft-mse")
    again = ImageJob.get_by_id(job.id).settings_dict()
    assert again["mode"] == "inpaint"
    assert again["init_image"] == f"inputs/{'ab' * 32}.png"
    assert again["mask"] == f"inputs/{'cd' * 32}.png"
    assert (again["denoising_strength"], again["inpaint_full_res"], again["hr_scale"]) == (0.4, True, 1.5)
    assert (again["checkpoint"], again["vae"]) == ("dream.safetensors", "vae-ft-mse")
    assert ImageFile.select().count() == 0


def test_running_the_step_again_changes_nothing(tmp_path: Path) -> None:
    db = open_database(tmp_path / "a.db")
    columns = [c.name for c in db.get_columns("imagejob")]
    with db.atomic():
        m005_image_modes(db)  # a half-applied run retried: the columns exist already
    assert [c.name for c in db.get_columns("imagejob")] == columns
    assert database.obj is db
