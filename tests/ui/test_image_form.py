"""What the image tabs share: raw values coerced, each new field's type named in its message, A1111's names when
a form is filled from a job or a PNG."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr
import pytest

import ui.image_form
from services.catalog import Catalog
from services.container import TINY_SD_NAME
from ui.common import type_errors
from ui.image_form import (
    INPAINT_AREAS,
    MASKED_CONTENT,
    RESIZE_CHOICES,
    coerce,
    failure_text,
    field_values,
    open_single,
    reuse_values,
    reused_models,
)


def test_whole_number_fields_arrive_as_ints_and_empty_texts_as_empty() -> None:
    values = coerce({"width": 64.0, "mask_blur": 4.0, "resize_mode": 2.0, "inpaint_full_res_padding": 32.0,
                     "denoising_strength": 0.5, "cfg_scale": 7.0, "model": None, "prompt": None})
    assert values == {"width": 64, "mask_blur": 4, "resize_mode": 2, "inpaint_full_res_padding": 32,
                      "denoising_strength": 0.5, "cfg_scale": 7.0, "model": "", "prompt": ""}
    assert type(values["cfg_scale"]) is float  # not a whole-number field


def test_radio_checkbox_and_image_fields_name_what_they_allow() -> None:
    with gr.Blocks():
        fields = {"resize_mode": gr.Radio(RESIZE_CHOICES, value=0),
                  "inpainting_fill": gr.Radio(MASKED_CONTENT, value=1),
                  "inpaint_full_res": gr.Radio(INPAINT_AREAS, value=False), "enable_hr": gr.Checkbox(False),
                  "init_image": gr.Image(), "mask": gr.Image()}
    good = {"resize_mode": 2.0, "inpainting_fill": 0, "inpaint_full_res": True, "enable_hr": False,
            "init_image": {"path": "/tmp/gradio/abc/a.png", "meta": {"_type": "gradio.FileData"}}, "mask": None}
    assert type_errors(fields, good, optional=["mask"]) == {}
    bad = {"resize_mode": 3, "inpainting_fill": True, "inpaint_full_res": 1, "enable_hr": "yes",
           "init_image": "a.png", "mask": {"url": "http://x"}}
    errors = type_errors(fields, bad, optional=["mask"])
    assert errors["resize_mode"] == ('resize_mode must be one of: 0 (Just resize), 1 (Crop and resize), '
                                     '2 (Resize and fill), got 3.')
    assert "got True" in errors["inpainting_fill"]  # true is no 1 here
    assert errors["inpaint_full_res"].startswith("inpaint_full_res must be one of: false (Whole picture), "
                                                 "true (Only masked)")
    assert errors["enable_hr"] == "enable_hr must be true or false, got 'yes'."
    assert errors["init_image"] == ("init_image must be an uploaded image file (in gradio_client: "
                                    "handle_file(path)), got 'a.png'.")
    assert errors["mask"].startswith("mask must be an uploaded image file (in gradio_client: handle_file(path)), "
                                     "or empty")


def test_a_form_is_filled_from_a1111_names_and_keeps_what_a_png_does_not_say() -> None:
    info = {"prompt": "a fox", "sampler_name": "DPM++ 2M", "seed": 7, "steps": 12, "denoising_strength": 0.4}
    values = field_values(info, ["prompt", "sampler", "seed", "steps", "denoising_strength", "hr_scale"])
    assert values[:5] == ["a fox", "DPM++ 2M", 7, 12, 0.4]
    assert values[5] == gr.skip()
    # A job's info: the seed actually used wins over the -1 it was asked with.
    assert field_values({"seed": -1, "seed_used": 99}, ["seed"]) == [99]


@pytest.fixture
def picks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list[str]]:
    """Services with one checkpoint and one VAE in their folders, a default model label, and the notes shown."""
    folders = {name: tmp_path / name for name in ("models", "loras", "vae", "upscalers")}
    for folder in folders.values():
        folder.mkdir()
    (folders["models"] / "dreamshaper_8.safetensors").write_bytes(b"w")
    (folders["vae"] / "vae-ft-mse.safetensors").write_bytes(b"v")
    services = SimpleNamespace(catalog=Catalog(*folders.values()),
                               image_slot=SimpleNamespace(default_model=TINY_SD_NAME))
    notes: list[str] = []
    monkeypatch.setattr(ui.image_form, "info_toast", notes.append)
    return services, notes


def test_reuse_selects_the_checkpoint_a_job_asked_for_not_the_name_of_the_model_that_ran(picks: Any) -> None:
    services, notes = picks
    # The job ran with Default: its `model` is the display name, which no dropdown choice is.
    job = {"prompt": "a fox", "model": TINY_SD_NAME, "checkpoint": "", "vae": ""}
    assert reuse_values(services, job, ["prompt", "model", "vae"]) == ["a fox", "", ""]
    job = {"model": "dreamshaper_8.safetensors", "checkpoint": "dreamshaper_8.safetensors", "vae": "vae-ft-mse"}
    assert reused_models(services, job) == {"model": "dreamshaper_8.safetensors", "vae": "vae-ft-mse.safetensors",
                                            "refiner_checkpoint": ""}  # no refiner written: off
    assert reused_models(services, {**job, "refiner_checkpoint": "dreamshaper_8"})["refiner_checkpoint"] == \
        "dreamshaper_8.safetensors"
    assert notes == []


def test_a_checkpoint_or_vae_the_server_no_longer_has_becomes_default_with_a_note(picks: Any) -> None:
    services, notes = picks
    job = {"model": "gone.safetensors", "checkpoint": "gone.safetensors", "vae": "old-vae.safetensors"}
    assert reused_models(services, job) == {"model": "", "vae": "", "refiner_checkpoint": ""}
    assert notes == ["Checkpoint 'gone.safetensors' is not on this server (any more): Default is selected instead.",
                     "VAE 'old-vae.safetensors' is not on this server (any more): Automatic is selected instead."]


def test_a_png_names_its_checkpoint_as_pngs_do(picks: Any) -> None:
    services, notes = picks
    # Made with the server's default: its label. With a checkpoint of the folder: A1111 writes the stem.
    assert reused_models(services, {"model": TINY_SD_NAME})["model"] == ""
    assert reused_models(services, {"model": "dreamshaper_8"})["model"] == "dreamshaper_8.safetensors"
    assert notes == []
    assert reused_models(services, {"model": "v1-5-pruned-emaonly"})["model"] == ""
    assert notes == ["Checkpoint 'v1-5-pruned-emaonly' is not on this server (any more): Default is selected "
                     "instead."]
    # A PNG that names no model or VAE leaves the form's choice as it is.
    assert reused_models(services, {"prompt": "a fox"}) == {"model": gr.skip(), "vae": gr.skip(),
                                                           "refiner_checkpoint": ""}


def test_a_job_failed_for_a_model_that_did_not_load_points_to_the_tabs_model_line() -> None:
    reason = "The image model m is not on this machine, and it could not be downloaded. To fetch it, run: …"
    slot = SimpleNamespace(state=SimpleNamespace(value="failed"), reason=reason)
    services = SimpleNamespace(image_slot=SimpleNamespace(status=lambda: slot))
    # Said once, on the model line; the result column and the toast point to it.
    said = failure_text(services, SimpleNamespace(error=reason, message=f"❌ {reason}"))
    assert said == "The image model is not available: the line at the top of the Image tab says why and what to do."
    # Any other failure says its own reason.
    other = SimpleNamespace(error="could not save the images (OSError: disk full)", message="Job 3 failed")
    assert failure_text(services, other) == "could not save the images (OSError: disk full)"


def test_a_single_result_opens_in_the_preview_and_several_stay_in_the_grid() -> None:
    assert open_single({"files": ["2026-12-06/1-0-5.png"]}).selected_index == 0
    assert open_single({"files": ["a.png", "b.png"]}) == gr.skip()
    assert open_single(None) == gr.skip()
