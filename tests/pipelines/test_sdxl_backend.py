"""SDXL through the diffusers backend, as SD 1.5 runs: folders and single files, A1111's prompt syntax over both text
encoders, size conditioning in every pass, the modes (img2img, inpaint with 4- and 9-channel UNets, hires fix),
batches that give each job its pixels alone, Stop in a batch, LoRAs in diffusers' and kohya's layouts."""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from contracts import ImageRequest
from pipelines.diffusers_backend import DiffusersBackend
from pipelines.image_base import BatchItem, JobCancelled, StepUpdate
from tests.pipelines.tiny_assets import make_tiny_sdxl_lora

SIZE = 64


@pytest.fixture(scope="module")
def xl_backend(tiny_sdxl_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> DiffusersBackend:
    loras = tmp_path_factory.mktemp("xl-loras")
    make_tiny_sdxl_lora(tiny_sdxl_dir, loras / "xl-style.safetensors")
    make_tiny_sdxl_lora(tiny_sdxl_dir, loras / "xl-kohya.safetensors", layout="kohya", seed=1)
    backend = DiffusersBackend(str(tiny_sdxl_dir), display_name="tiny-sdxl", lora_dir=str(loras))
    backend.load(lambda phase: None)
    return backend


def pixels(backend: DiffusersBackend, seeds: list[int] | None = None, **fields: Any) -> list[np.ndarray]:
    fields = {"prompt": "a red cat", "width": SIZE, "height": SIZE, "steps": 2, **fields}
    out = backend.generate(ImageRequest(**fields), seeds or [1], lambda u: None, threading.Event())
    return [np.asarray(o.image) for o in out]


def square(box: tuple[int, int, int, int] = (16, 16, 48, 48)) -> Image.Image:
    image = Image.new("RGB", (SIZE, SIZE), (40, 90, 200))
    image.paste((250, 240, 10), box)
    return image


def test_sdxl_runs_as_sd_runs_and_says_its_family(xl_backend: DiffusersBackend) -> None:
    first, second = pixels(xl_backend)[0], pixels(xl_backend)[0]
    assert first.shape == (SIZE, SIZE, 3)
    assert np.array_equal(first, second)
    assert not np.array_equal(first, pixels(xl_backend, [2])[0])
    assert xl_backend.describe()["family"] == "sdxl"
    # A1111's prompt syntax changes the picture (it was dropped for SDXL before); BREAK too.
    assert not np.array_equal(pixels(xl_backend, prompt="a (red:1.4) cat")[0], first)
    assert not np.array_equal(pixels(xl_backend, prompt="a red BREAK cat")[0], first)


def test_an_empty_negative_prompt_is_zeroed_as_a1111_does(xl_backend: DiffusersBackend,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, Any]] = []
    pipe = xl_backend.pipe
    original = type(pipe).__call__

    @functools.wraps(original)  # its signature stays what size_conditioning reads
    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(pipe), "__call__", spy)
    pixels(xl_backend)
    call = seen[-1]
    assert "prompt" not in call  # always our embeddings, never diffusers' own encoding of ""
    assert not call["negative_prompt_embeds"].any()
    assert not call["negative_pooled_prompt_embeds"].any()
    assert call["original_size"] == call["target_size"] == (SIZE, SIZE)
    assert call["crops_coords_top_left"] == (0, 0)


def test_every_pass_is_size_conditioned_at_its_own_size(xl_backend: DiffusersBackend,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import pipelines.diffusers_running as running

    sizes: list[tuple[int, int]] = []
    real = running.sdxl.size_conditioning
    monkeypatch.setattr(running.sdxl, "size_conditioning",
                        lambda w, h, **kw: sizes.append((w, h)) or real(w, h, **kw))
    hires = pixels(xl_backend, enable_hr=True, hr_scale=1.5, hr_upscaler="Latent", denoising_strength=0.6)[0]
    assert hires.shape == (96, 96, 3)
    assert sizes == [(SIZE, SIZE), (96, 96)]  # the hires pass is conditioned on the upscaled size


def test_img2img_and_inpaint_with_4_and_9_channel_unets(xl_backend: DiffusersBackend,
                                                        tiny_sdxl_dir: Path, tmp_path: Path) -> None:
    from pipelines.tiny import ensure_tiny_sdxl_inpaint

    picture, mask = square(), Image.new("L", (SIZE, SIZE))
    mask.paste(255, (0, 0, 32, SIZE))
    reworked = pixels(xl_backend, mode="img2img", init_image=picture, denoising_strength=0.6)[0]
    assert reworked.shape == (SIZE, SIZE, 3)
    assert not np.array_equal(reworked, np.asarray(picture))
    painted = pixels(xl_backend, mode="inpaint", init_image=picture, mask=mask, mask_blur=0)[0]
    assert np.array_equal(painted[:, 40:], np.asarray(picture)[:, 40:])  # the unmasked half comes back untouched
    assert not np.array_equal(painted[:, :24], np.asarray(picture)[:, :24])
    nine = DiffusersBackend(str(ensure_tiny_sdxl_inpaint(tmp_path / "xl-inpaint")), display_name="xl-inpaint")
    nine.load(lambda phase: None)
    assert nine.loaded.inpainting_unet()
    assert pixels(nine)[0].shape == (SIZE, SIZE, 3)  # txt2img on a 9-channel model: a fully masked blank
    repainted = pixels(nine, mode="inpaint", init_image=picture, mask=mask, mask_blur=0)[0]
    assert np.array_equal(repainted[:, 40:], np.asarray(picture)[:, 40:])


def test_a_single_file_gives_the_folders_pixels_and_a1111s_hash(xl_backend: DiffusersBackend,
                                                                tiny_sdxl_file: Path) -> None:
    single = DiffusersBackend(str(tiny_sdxl_file), display_name="tiny-sdxl.safetensors")
    single.load(lambda phase: None)
    assert len(single.model_hash) == 10
    assert np.allclose(pixels(single)[0].astype(int), pixels(xl_backend)[0].astype(int), atol=1)


def item(prompt: str, seeds: list[int], stop: threading.Event | None = None,
         updates: list[StepUpdate] | None = None, **fields: Any) -> BatchItem:
    req = ImageRequest(**{"prompt": prompt, "width": SIZE, "height": SIZE, "steps": 2, **fields})
    return BatchItem(req, seeds, (updates if updates is not None else []).append, stop or threading.Event())


def test_a_batch_gives_each_job_its_pixels_alone_even_with_other_chunk_counts(xl_backend: DiffusersBackend) -> None:
    long_prompt = "a red cat, " * 30  # two 75-token chunks
    out = xl_backend.generate_batch([item("a red cat", [3]), item(long_prompt, [4]), item("a (red:1.3) dog", [5])])
    alone = [pixels(xl_backend, [3])[0], pixels(xl_backend, [4], prompt=long_prompt)[0],
             pixels(xl_backend, [5], prompt="a (red:1.3) dog")[0]]
    for outcome, expected in zip(out, alone, strict=True):
        assert outcome is not None
        assert np.array_equal(np.asarray(outcome[0].image), expected)


def test_a_stopped_job_leaves_an_sdxl_batch_and_the_others_keep_their_pixels(xl_backend: DiffusersBackend) -> None:
    stop = threading.Event()

    def stop_after_first(update: StepUpdate) -> None:
        stop.set()

    quitter = BatchItem(ImageRequest(prompt="a dog", width=SIZE, height=SIZE, steps=3), [8], stop_after_first, stop)
    keeper = item("a red cat", [9], steps=3)
    out = xl_backend.generate_batch([quitter, keeper])
    assert out[0] is None
    assert out[1] is not None
    assert np.array_equal(np.asarray(out[1][0].image), pixels(xl_backend, [9], steps=3)[0])
    with pytest.raises(JobCancelled):
        xl_backend.generate(ImageRequest(prompt="x", width=SIZE, height=SIZE, steps=2), [1], lambda u: None, stop)


@pytest.mark.parametrize("name", ["xl-style", "xl-kohya"])
def test_sdxl_loras_in_diffusers_and_kohya_layouts_change_pixels(xl_backend: DiffusersBackend, name: str) -> None:
    plain = pixels(xl_backend)[0]
    assert np.array_equal(pixels(xl_backend, prompt=f"a red cat <lora:{name}:0>")[0], plain)
    changed = pixels(xl_backend, prompt=f"a red cat <lora:{name}:1>")[0]
    assert not np.array_equal(changed, plain)
    assert xl_backend.runner.loras.loaded == [name]
