"""The catalog of checkpoints, VAEs, LoRAs and upscalers under the data folders."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from services.catalog import Catalog


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    models, loras, vae, up = (tmp_path / n for n in ("models", "loras", "vae", "upscalers"))
    for folder in (models, loras, vae, up):
        folder.mkdir()
    (models / "dreamshaper_8.safetensors").write_bytes(b"weights-1")
    (models / "v1-5-pruned.ckpt").write_bytes(b"weights-2")
    (models / "Realistic").mkdir()
    (models / "Realistic" / "model_index.json").write_text("{}")
    (models / "tiny-r1").mkdir()  # a text model folder (no model_index.json): not a checkpoint
    (models / "tiny-sd.tmp-12-ab").mkdir()  # a tiny build in progress
    (models / "tiny-sd.tmp-12-ab" / "model_index.json").write_text("{}")
    (models / "notes.txt").write_text("x")
    (models / ".hidden.safetensors").write_bytes(b"x")
    (loras / "style.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}lora")
    (loras / "sub").mkdir()
    (loras / "sub" / "detail.pt").write_bytes(b"x")
    (vae / "vae-ft-mse.safetensors").write_bytes(b"x")
    (vae / "sdxl-vae").mkdir()
    (vae / "sdxl-vae" / "config.json").write_text("{}")
    (up / "4x-UltraSharp.pth").write_bytes(b"x")
    (up / "readme.md").write_text("x")
    return Catalog(models, loras, vae, up)


def test_lists_what_the_folders_hold(catalog: Catalog) -> None:
    assert catalog.models() == ["dreamshaper_8.safetensors", "Realistic", "v1-5-pruned.ckpt"]
    assert catalog.vaes() == ["sdxl-vae", "vae-ft-mse.safetensors"]
    assert catalog.loras() == ["detail", "style"]
    assert catalog.upscalers() == ["4x-UltraSharp"]


def test_missing_folders_list_nothing(tmp_path: Path) -> None:
    empty = Catalog(tmp_path / "m", tmp_path / "l", tmp_path / "v", tmp_path / "u")
    assert (empty.models(), empty.vaes(), empty.loras(), empty.upscalers()) == ([], [], [], [])
    with pytest.raises(ValueError, match=r"choose one of: none \(put .safetensors checkpoints"):
        empty.resolve_model("x")


def test_messages_name_folders_under_the_data_dir_and_cut_what_the_user_sent(tmp_path: Path,
                                                                             catalog: Catalog) -> None:
    data = tmp_path / "data"
    empty = Catalog(data / "models", data / "loras", data / "vae", data / "upscalers")
    errors = empty.field_errors("a <lora:x:1>", "any", "some-vae")
    assert "(put .safetensors checkpoints or diffusers folders in <data>/models)" in errors["model"]
    assert "(put VAE .safetensors files in <data>/vae)" in errors["vae"]
    assert "(put .safetensors LoRA files in <data>/loras)" in errors["prompt"]
    assert not any(str(tmp_path) in message for message in errors.values())
    sent = "<img src=x onerror=alert(1)>" + "v" * 100_000
    errors = catalog.field_errors(f"<lora:{'l' * 100_000}:1>", sent, sent + "\n")
    assert set(errors) == {"prompt", "model", "vae"}
    assert all(len(message) < 300 for message in errors.values())  # the available names, the sent one cut short
    assert "'lllll" in errors["prompt"]
    assert "…'" in errors["prompt"]
    assert "'<img src=x onerror=alert(1)>vvvvvvvvvvv…'" in errors["model"]
    assert "'<img src=x onerror=alert(1)>vvvvvvvvvvv…'" in errors["vae"]


def test_resolves_names_stems_and_a1111_titles(catalog: Catalog) -> None:
    path = catalog.models_dir / "dreamshaper_8.safetensors"
    assert catalog.resolve_model("dreamshaper_8.safetensors") == path
    assert catalog.resolve_model("dreamshaper_8") == path
    assert catalog.resolve_model("dreamshaper_8.safetensors [879db523c3]") == path  # A1111's checkpoint title
    assert catalog.resolve_model("Realistic") == catalog.models_dir / "Realistic"
    assert catalog.resolve_vae("vae-ft-mse") == catalog.vae_dir / "vae-ft-mse.safetensors"
    with pytest.raises(ValueError, match=r"model 'sdxl' is not available; choose one of: dreamshaper_8.safetensors, "
                                         r"Realistic, v1-5-pruned.ckpt"):
        catalog.resolve_model("sdxl")
    with pytest.raises(ValueError, match="vae 'nope'"):
        catalog.resolve_vae("nope")


def test_hashes_and_field_errors(catalog: Catalog) -> None:
    assert catalog.model_hash("dreamshaper_8") == hashlib.sha256(b"weights-1").hexdigest()[:10]
    assert catalog.model_hash("Realistic") == ""
    assert catalog.lora_hashes("a <lora:style:0.5>") == "style: " + hashlib.sha256(b"lora").hexdigest()[:12]
    assert catalog.field_errors("a <lora:style:1>", "dreamshaper_8", "vae-ft-mse") == {}
    errors = catalog.field_errors("a <lora:gone:1>", "sdxl", "nope")
    assert set(errors) == {"prompt", "model", "vae"}
    assert "available: detail, style" in errors["prompt"]


def test_a_name_as_a_png_or_a1111_writes_it_finds_the_listed_choice(catalog: Catalog) -> None:
    assert catalog.listed_model("dreamshaper_8") == "dreamshaper_8.safetensors"  # A1111's Model: the stem
    assert catalog.listed_model("dreamshaper_8.safetensors [879db523c3]") == "dreamshaper_8.safetensors"
    assert catalog.listed_model("Realistic") == "Realistic"
    assert catalog.listed_model("atelier-tiny-sd (random weights, makes noise)") is None
    assert catalog.listed_vae("vae-ft-mse") == "vae-ft-mse.safetensors"
    assert catalog.listed_vae("missing.safetensors") is None


def test_families_of_checkpoints_and_controlnets_and_none_for_what_cannot_be_told(catalog: Catalog,
                                                                                   tmp_path: Path) -> None:
    unet = tmp_path / "models" / "Realistic" / "unet"
    unet.mkdir()
    unet.joinpath("config.json").write_text('{"addition_embed_type": "text_time"}')
    controlnets = tmp_path / "controlnet"
    for name, config in (("cn-xl", '"addition_embed_type": "text_time"'), ("cn-15", '"cross_attention_dim": 768')):
        (controlnets / name).mkdir(parents=True)
        (controlnets / name / "config.json").write_text('{"_class_name": "ControlNetModel", ' + config + "}")
        (controlnets / name / "diffusion_pytorch_model.safetensors").write_bytes(b"x")
    (controlnets / "broken.safetensors").write_bytes(b"not a safetensors file")
    catalog.controlnet_dir = controlnets
    families = catalog.families()
    # Unreadable files and a .ckpt are not told without loading them: null, and the listing still answers.
    assert families["models"] == {"dreamshaper_8.safetensors": None, "Realistic": "sdxl", "v1-5-pruned.ckpt": None}
    assert {name.split(" [")[0]: family for name, family in families["controlnets"].items()} == {
        "broken": None, "cn-15": "sd15", "cn-xl": "sdxl"}
    assert families["default"] is None
