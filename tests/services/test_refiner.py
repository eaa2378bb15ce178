"""A1111's SDXL refiner through the services, on the tiny models: a second tiny SDXL (the tiny one with other UNet
weights) takes over at "switch at"; off, nothing changes; on, the pixels change and a seed gives the same ones again;
bad values are named; the PNG carries `Refiner: name, Refiner switch at: x` and PNG Info reads it back."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from contracts import InvalidRequest
from pipelines.tiny import ensure_tiny_sdxl_inpaint
from services import pnginfo
from services.container import Services, build_services
from services.images import run_and_collect
from tests.services.conftest import tiny_settings

SIZE = 64
UNET_FILE = "unet/diffusion_pytorch_model.safetensors"


def make_refiner(base: Path, out: Path) -> Path:
    """The tiny SDXL with its UNet's weights moved a little: another SDXL checkpoint, as any can be a refiner."""
    shutil.copytree(base, out, symlinks=True)
    weights = load_file(str(base / UNET_FILE))
    generator = torch.Generator().manual_seed(11)
    moved = {k: v + 0.05 * torch.randn(v.shape, generator=generator, dtype=v.dtype) for k, v in weights.items()}
    (out / UNET_FILE).unlink()
    save_file(moved, str(out / UNET_FILE))
    return out


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory, tiny_sd_dir: Path, tiny_sdxl_dir: Path,
             module_database_url: str) -> Services:
    data = tmp_path_factory.mktemp("data")
    make_refiner(tiny_sdxl_dir, data / "models" / "tiny-xl-refiner")
    ensure_tiny_sdxl_inpaint(data / "models" / "tiny-xl-inpaint")
    settings = tiny_settings(data, tiny_sd_dir, tiny_sdxl_dir=tiny_sdxl_dir, database_url=module_database_url,
                             cache_enabled=False)
    return build_services(settings)


def job(services: Services, **fields: Any) -> tuple[Any, list[np.ndarray]]:
    values = {"prompt": "a red cat", "width": SIZE, "height": SIZE, "steps": 4, "seed": 5, "model": "tiny-sdxl",
              **fields}
    snap = run_and_collect(services.images, services.images.validate(**values))
    assert snap.status == "done", snap.error
    return snap, [np.asarray(Image.open(p).convert("RGB")) for p in snap.files]


def test_the_refiner_takes_over_at_the_switch_and_is_written_and_read_back(services: Services) -> None:
    _, (plain,) = job(services)
    off_snap, (off,) = job(services, refiner_checkpoint="", refiner_switch_at=0.3)
    assert np.array_equal(off, plain)  # off: exactly the picture without it
    assert "Refiner" not in Image.open(off_snap.files[0]).info["parameters"]
    assert "refiner" not in str(services.history.get_job(off_snap.job_id, ""))  # history as before
    # The base as its own refiner: the hand-off splits one schedule, so the picture is the base's alone.
    _, (handed_to_itself,) = job(services, refiner_checkpoint="tiny-sdxl", refiner_switch_at=0.5)
    assert np.array_equal(handed_to_itself, plain)
    snap, (refined,) = job(services, refiner_checkpoint="tiny-xl-refiner", refiner_switch_at=0.5)
    assert not np.array_equal(refined, plain)
    _, (again,) = job(services, refiner_checkpoint="tiny-xl-refiner", refiner_switch_at=0.5)
    assert np.array_equal(again, refined)  # the same seed, the same pixels
    _, (later,) = job(services, refiner_checkpoint="tiny-xl-refiner", refiner_switch_at=0.75)
    assert not np.array_equal(later, refined)  # the switch point matters
    # The job's record keeps it: History's row and the info that Reuse reads give it back.
    row = services.history.get_job(snap.job_id, "")
    assert row is not None
    assert (row["refiner_checkpoint"], row["refiner_switch_at"]) == ("tiny-xl-refiner", 0.5)
    assert (snap.info["refiner_checkpoint"], snap.info["refiner_switch_at"]) == ("tiny-xl-refiner", 0.5)
    text = Image.open(snap.files[0]).info["parameters"]
    assert text.endswith("Refiner: tiny-xl-refiner, Refiner switch at: 0.5")
    read = pnginfo.read(snap.files[0])
    assert (read["refiner_checkpoint"], read["refiner_switch_at"]) == ("tiny-xl-refiner", 0.5)
    # What PNG Info read runs again, to the same pixels.
    _, (reused,) = job(services, refiner_checkpoint=read["refiner_checkpoint"],
                       refiner_switch_at=read["refiner_switch_at"])
    assert np.array_equal(reused, refined)


def test_img2img_with_a_refiner_runs_and_a_batch_gives_each_job_its_own(services: Services) -> None:
    init = Image.new("RGB", (SIZE, SIZE), (200, 40, 40))
    _, (plain,) = job(services, mode="img2img", init_image=init, denoising_strength=0.75)
    snap, (refined,) = job(services, mode="img2img", init_image=init, denoising_strength=0.75,
                           refiner_checkpoint="tiny-xl-refiner", refiner_switch_at=0.5)
    assert not np.array_equal(refined, plain)
    assert "Refiner switch at: 0.5" in Image.open(snap.files[0]).info["parameters"]
    _, pictures = job(services, batch_count=2, refiner_checkpoint="tiny-xl-refiner", refiner_switch_at=0.5)
    _, (alone,) = job(services, seed=6, refiner_checkpoint="tiny-xl-refiner", refiner_switch_at=0.5)
    assert np.array_equal(pictures[1], alone)  # seed 5 + 1 in a batch, as alone


def test_jobs_with_different_refiners_never_share_a_call() -> None:
    from contracts import ImageRequest

    base = {"prompt": "x", "model": "tiny-sdxl"}
    shapes = {ImageRequest(**base).mode_shape(),
              ImageRequest(**base, refiner_checkpoint="a").mode_shape(),
              ImageRequest(**base, refiner_checkpoint="b").mode_shape(),
              ImageRequest(**base, refiner_checkpoint="a", refiner_switch_at=0.5).mode_shape()}
    assert len(shapes) == 4


@pytest.mark.parametrize(("fields", "field", "words"), [
    ({"refiner_switch_at": 0}, "refiner_switch_at", "between 0 and 1"),
    ({"refiner_switch_at": 1}, "refiner_switch_at", "between 0 and 1"),
    ({"refiner_switch_at": 1.5}, "refiner_switch_at", "between 0 and 1"),
    ({"refiner_switch_at": -0.2}, "refiner_switch_at", "between 0 and 1"),
    ({"refiner_switch_at": "soon"}, "refiner_switch_at", "number"),
    ({"refiner_checkpoint": "nope"}, "refiner_checkpoint", "not available"),
    ({"refiner_checkpoint": "tiny-sd"}, "refiner_checkpoint", "must both be SDXL"),
    ({"model": "tiny-sd"}, "model", "must both be SDXL"),
    ({"enable_hr": True}, "refiner_checkpoint", "hires fix"),
])
def test_bad_refiner_values_are_named(services: Services, fields: dict[str, Any], field: str, words: str) -> None:
    values = {"prompt": "a cat", "width": SIZE, "height": SIZE, "steps": 2, "model": "tiny-sdxl",
              "refiner_checkpoint": "tiny-xl-refiner", "refiner_switch_at": 0.8, **fields}
    with pytest.raises(InvalidRequest) as refused:
        services.images.validate(**values)
    assert field in refused.value.errors, refused.value.errors
    assert words in refused.value.errors[field]


def test_the_result_cache_tells_refiners_apart_by_their_files(services: Services) -> None:
    import os

    services.images.cache.enabled = True
    try:
        fields = {"refiner_checkpoint": "tiny-xl-refiner", "refiner_switch_at": 0.5, "seed": 21}
        first, _ = job(services, **fields)
        again, _ = job(services, **fields)
        assert not first.info.get("cached")
        assert again.info.get("cached")
        unet = services.catalog.resolve_model("tiny-xl-refiner") / UNET_FILE
        stat = unet.stat()
        os.utime(unet, (stat.st_atime, stat.st_mtime + 60))  # the refiner's weights replaced under the same name
        replaced, _ = job(services, **fields)
        assert not replaced.info.get("cached")
    finally:
        services.images.cache.enabled = False


@pytest.mark.parametrize(("fields", "words"), [
    ({"refiner_checkpoint": "tiny-xl-inpaint"}, "'tiny-xl-inpaint' is an inpainting checkpoint"),
    ({"model": "tiny-xl-inpaint"}, "the checkpoint is an inpainting model"),
])
def test_an_inpainting_checkpoint_on_either_side_fails_the_job_saying_so(services: Services, fields: dict[str, Any],
                                                                          words: str) -> None:
    values = {"prompt": "a cat", "width": SIZE, "height": SIZE, "steps": 2, "model": "tiny-sdxl",
              "refiner_checkpoint": "tiny-xl-refiner", **fields}
    snap = run_and_collect(services.images, services.images.validate(**values))
    assert snap.status == "failed"
    assert words in snap.error
