"""img2img, inpaint and hires fix on the tiny models (an ordinary one and a 9-channel inpainting one), and the
request fields' checks."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from contracts import ImageLimits, ImageRequest, check_inputs
from pipelines.diffusers_backend import DiffusersBackend
from pipelines.image_base import BatchItem, JobCancelled, StepUpdate
from services.batcher import compute_shape

LIMITS = ImageLimits(min_size=64, max_size=256, max_steps=50)


@pytest.fixture(scope="module")
def sd(tiny_sd_dir: Path) -> DiffusersBackend:
    backend = DiffusersBackend(str(tiny_sd_dir), display_name="tiny", device="cpu")
    backend.load(lambda phase: None)
    return backend


@pytest.fixture(scope="module")
def sd_inpaint(tmp_path_factory: pytest.TempPathFactory) -> DiffusersBackend:
    from pipelines.tiny import ensure_tiny_sd_inpaint

    folder = ensure_tiny_sd_inpaint(tmp_path_factory.mktemp("models") / "tiny-sd-inpaint")
    backend = DiffusersBackend(str(folder), display_name="tiny-inpaint", device="cpu")
    backend.load(lambda phase: None)
    assert backend.pipe.unet.config.in_channels == 9  # loaded through the same from_pretrained code
    return backend


@pytest.fixture(params=["sd", "sd_inpaint"])
def any_model(request: pytest.FixtureRequest) -> DiffusersBackend:
    return request.getfixturevalue(request.param)


def picture(width: int = 64, height: int = 64, seed: int = 3) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def square_mask(width: int = 64, height: int = 64, box: tuple[int, int, int, int] = (24, 24, 40, 40)) -> Image.Image:
    mask = Image.new("L", (width, height))
    mask.paste(255, box)
    return mask


def request(**changes: Any) -> ImageRequest:
    return ImageRequest(**{"prompt": "a red fox", "width": 64, "height": 64, "steps": 4, **changes})


def generate(backend: DiffusersBackend, req: ImageRequest, seed: int = 7,
             stop: threading.Event | None = None) -> tuple[np.ndarray, list[StepUpdate]]:
    assert check_inputs(req, LIMITS) == {}
    updates: list[StepUpdate] = []
    (image,) = backend.generate(req, [seed], updates.append, stop or threading.Event())
    return np.asarray(image.image), updates


MODES = {
    "img2img": {"mode": "img2img", "init_image": picture(), "denoising_strength": 0.6},
    "inpaint fill": {"mode": "inpaint", "init_image": picture(), "mask": square_mask(), "inpainting_fill": 0},
    "inpaint original": {"mode": "inpaint", "init_image": picture(), "mask": square_mask()},
    "inpaint latent noise": {"mode": "inpaint", "init_image": picture(), "mask": square_mask(), "inpainting_fill": 2},
    "inpaint latent nothing": {"mode": "inpaint", "init_image": picture(), "mask": square_mask(),
                               "inpainting_fill": 3},
    "inpaint only masked": {"mode": "inpaint", "init_image": picture(), "mask": square_mask(),
                            "inpaint_full_res": True, "inpaint_full_res_padding": 8},
    "hires latent": {"enable_hr": True, "hr_scale": 1.5},
    "hires lanczos": {"enable_hr": True, "hr_scale": 1.5, "hr_upscaler": "Lanczos", "hr_second_pass_steps": 2},
}


@pytest.mark.parametrize("mode", list(MODES))
def test_the_same_seed_gives_the_same_pixels_in_every_mode(sd: DiffusersBackend, mode: str) -> None:
    req = request(**MODES[mode])
    first, _ = generate(sd, req, seed=11)
    again, _ = generate(sd, req, seed=11)
    other, _ = generate(sd, req, seed=12)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_masked_content_modes_differ(sd: DiffusersBackend) -> None:
    results = [generate(sd, request(**MODES[f"inpaint {name}"]))[0]
               for name in ("fill", "original", "latent noise", "latent nothing")]
    inside = (slice(28, 36), slice(28, 36))
    for i in range(len(results)):
        for j in range(i + 1, len(results)):
            assert not np.array_equal(results[i][inside], results[j][inside]), (i, j)


@pytest.mark.parametrize("only_masked", [False, True], ids=["whole picture", "only masked"])
def test_unmasked_pixels_come_back_untouched(any_model: DiffusersBackend, only_masked: bool) -> None:
    # A picture of another size than the request: whole picture resizes it (resize mode 0), only masked keeps it.
    init, mask = picture(96, 80), square_mask(96, 80, (40, 30, 56, 46))
    req = request(mode="inpaint", init_image=init, mask=mask, mask_blur=2, inpaint_full_res=only_masked,
                  inpaint_full_res_padding=4, denoising_strength=0.9)
    out, _ = generate(any_model, req)
    if only_masked:
        assert out.shape == (80, 96, 3)
        original, box = np.asarray(init), (40, 30, 56, 46)
    else:
        assert out.shape == (64, 64, 3)
        original, box = np.asarray(init.resize((64, 64), Image.Resampling.LANCZOS)), (26, 24, 38, 37)
    far = np.ones(original.shape[:2], bool)
    margin = 8  # beyond the blur (2 px, doubled for the whole picture) and the resize's reach
    far[max(box[1] - margin, 0):box[3] + margin, max(box[0] - margin, 0):box[2] + margin] = False
    assert np.array_equal(out[far], original[far])
    centre = (slice(box[1] + 3, box[3] - 3), slice(box[0] + 3, box[2] - 3))
    assert not np.array_equal(out[centre], original[centre])  # the masked part was repainted


def test_inpainting_with_the_9_channel_model_uses_the_mask_and_picture_channels(sd_inpaint: DiffusersBackend) -> None:
    seen: list[int] = []
    hook = sd_inpaint.pipe.unet.register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape[1]))
    try:
        generate(sd_inpaint, request(**MODES["inpaint original"]))
        generate(sd_inpaint, request())  # txt2img on an inpainting checkpoint: the whole picture masked
    finally:
        hook.remove()
    assert set(seen) == {9}


def test_img2img_and_inpaint_share_the_loaded_weights(sd: DiffusersBackend) -> None:
    generate(sd, request(**MODES["img2img"]))
    generate(sd, request(**MODES["inpaint original"]))
    for task in ("img2img", "inpaint"):
        other = sd.loaded.task_pipe(task)
        assert other is not sd.pipe
        for name in ("unet", "vae", "text_encoder"):
            assert getattr(other, name) is getattr(sd.pipe, name)


@pytest.mark.parametrize("resize_mode", [0, 1, 2])
def test_img2img_gives_the_requested_size_in_every_resize_mode(sd: DiffusersBackend, resize_mode: int) -> None:
    out, updates = generate(sd, request(mode="img2img", init_image=picture(96, 64), width=64, height=80,
                                        resize_mode=resize_mode, denoising_strength=0.5))
    assert out.shape == (80, 64, 3)
    assert [u.step for u in updates] == [1, 2]
    assert updates[-1].total == 2


@pytest.mark.parametrize(("scale", "size"), [(1.5, (96, 96)), (1.3, (80, 80))])
def test_hires_fix_gives_the_target_size_and_counts_both_passes(any_model: DiffusersBackend, scale: float,
                                                                size: tuple[int, int]) -> None:
    out, updates = generate(any_model, request(enable_hr=True, hr_scale=scale, hr_second_pass_steps=3))
    assert out.shape[1::-1] == size
    assert [u.step for u in updates] == list(range(1, 8))  # 4 base steps, then 3 hires steps
    assert {u.total for u in updates} == {7}
    assert updates[-1].preview is not None
    assert updates[-1].preview.size == size
    assert updates[3].preview is not None
    assert updates[3].preview.size == (64, 64)


@pytest.mark.parametrize("stop_at", [2, 6], ids=["base pass", "hires pass"])
def test_stop_works_in_either_hires_pass(sd: DiffusersBackend, stop_at: int) -> None:
    stop = threading.Event()
    steps: list[int] = []

    def on_step(update: StepUpdate) -> None:
        steps.append(update.step)
        if update.step == stop_at:
            stop.set()

    with pytest.raises(JobCancelled):
        sd.generate(request(enable_hr=True, hr_scale=1.5, steps=4, hr_second_pass_steps=4), [1], on_step, stop)
    assert steps == list(range(1, stop_at + 1))


@pytest.mark.parametrize("mode", ["img2img", "inpaint original", "inpaint latent noise", "hires latent"])
def test_a_batch_gives_each_seed_the_pixels_it_gives_alone(sd: DiffusersBackend, mode: str) -> None:
    req = request(**MODES[mode])
    owl = req.model_copy(update={"prompt": "an owl"})
    outcomes = sd.generate_batch([BatchItem(req, [5, 6], lambda u: None, threading.Event()),
                                  BatchItem(owl, [7], lambda u: None, threading.Event())])
    batched = [np.asarray(g.image) for o in outcomes for g in o or []]
    alone = [generate(sd, req, 5)[0], generate(sd, req, 6)[0], generate(sd, owl, 7)[0]]
    assert len(batched) == 3
    for got, want in zip(batched, alone, strict=True):
        assert np.array_equal(got, want)


def test_a_stop_inside_an_inpaint_batch_spares_the_other_job(sd: DiffusersBackend) -> None:
    req = request(**MODES["inpaint original"])
    stop = threading.Event()

    def on_step(update: StepUpdate) -> None:
        if update.step == 1:
            stop.set()

    outcomes = sd.generate_batch([BatchItem(req, [5], on_step, stop),
                                  BatchItem(req.model_copy(update={"prompt": "an owl"}), [6], lambda u: None,
                                            threading.Event())])
    assert outcomes[0] is None
    assert outcomes[1] is not None
    assert len(outcomes[1]) == 1


# The request: fields, checks, settings, digests, batch shapes -------------------------------------------------
def test_todays_txt2img_request_is_unchanged_and_valid() -> None:
    req = ImageRequest(prompt="a fox")
    assert (req.mode, req.denoising_strength, req.resize_mode, req.mask_blur, req.inpainting_fill) == (
        "txt2img", 0.75, 0, 4, 1)
    assert (req.enable_hr, req.hr_scale, req.hr_upscaler, req.hr_second_pass_steps, req.model, req.vae) == (
        False, 2.0, "Latent", 0, "", "")
    assert check_inputs(req, ImageLimits()) == {}


@pytest.mark.parametrize(
    ("changes", "field", "needle"),
    [
        ({"mode": "img2img"}, "init_image", "init_image is required for img2img"),
        ({"mode": "inpaint", "init_image": picture()}, "mask", "mask is required for inpaint"),
        ({"init_image": picture()}, "init_image", "only used by img2img and inpaint"),
        ({"mode": "img2img", "init_image": picture(), "mask": square_mask()}, "mask", "only used by inpaint"),
        ({"mode": "inpaint", "init_image": picture(), "mask": Image.new("L", (64, 64))}, "mask", "all black"),
        ({"mode": "inpaint", "init_image": picture(), "mask": Image.new("L", (64, 64), 255),
          "inpainting_mask_invert": 1}, "mask", "nothing to repaint"),
        ({"denoising_strength": 1.5}, "denoising_strength", "between 0 and 1"),
        ({"resize_mode": 3}, "resize_mode", "0 just resize, 1 crop and resize, 2 resize and fill"),
        ({"mask_blur": 65}, "mask_blur", "between 0 and 64"),
        ({"inpainting_fill": 4}, "inpainting_fill", "0 fill, 1 original, 2 latent noise, 3 latent nothing"),
        ({"inpaint_full_res_padding": -1}, "inpaint_full_res_padding", "between 0 and 256"),
        ({"inpainting_mask_invert": 2}, "inpainting_mask_invert", "0 inpaint masked, 1 inpaint not masked"),
        ({"hr_scale": 0.5}, "hr_scale", "between 1 and 4"),
        ({"enable_hr": True, "hr_scale": 4, "height": 128}, "hr_scale", "makes 256x512; each side may be at most 256"),
        ({"hr_upscaler": "4x-Ultra"}, "hr_upscaler", "choose one of: Latent, "),
        ({"hr_second_pass_steps": 51}, "hr_second_pass_steps", "between 0 (same as steps) and 50"),
        ({"mode": "img2img", "init_image": picture(), "enable_hr": True}, "enable_hr", "only applies to txt2img"),
    ],
)
def test_each_bad_field_gets_its_own_message(changes: dict[str, Any], field: str, needle: str) -> None:
    errors = check_inputs(ImageRequest(**{"prompt": "p", "width": 64, "height": 64, **changes}), LIMITS)
    assert list(errors) == [field]
    assert needle in errors[field]


def test_an_unknown_mode_is_refused_by_the_type() -> None:
    with pytest.raises(ValueError, match="mode"):
        ImageRequest(prompt="p", mode="outpaint")


def test_upscaler_models_from_the_folder_are_accepted_by_name() -> None:
    req = ImageRequest(prompt="p", enable_hr=True, hr_upscaler="4x-Ultra")
    assert "hr_upscaler" in check_inputs(req, LIMITS)
    assert check_inputs(req.model_copy(update={"width": 64, "height": 64}), LIMITS, upscalers=["4x-Ultra"]) == {}


def test_settings_are_json_without_the_images_and_digests_stand_for_them() -> None:
    req = request(mode="inpaint", init_image=picture(), mask=square_mask())
    settings = req.settings()
    assert "init_image" not in settings
    assert "mask" not in settings
    assert json.loads(json.dumps(settings)) == settings
    digests = req.image_digests()
    assert set(digests) == {"init_image", "mask"}
    assert all(len(d) == 64 for d in digests.values())
    assert request().image_digests() == {"init_image": "", "mask": ""}
    other = req.model_copy(update={"init_image": picture(seed=4)}).image_digests()
    assert other["init_image"] != digests["init_image"]
    assert other["mask"] == digests["mask"]
    assert req.model_copy().image_digests() == digests


def test_batch_shapes_keep_modes_and_input_images_apart(sd: DiffusersBackend) -> None:
    plain = compute_shape(sd, request())
    assert compute_shape(sd, request(prompt="an owl", seed=3, batch_count=2)) == plain
    img2img = compute_shape(sd, request(**MODES["img2img"]))
    assert img2img != plain
    assert compute_shape(sd, request(**MODES["img2img"], prompt="an owl")) == img2img
    assert compute_shape(sd, request(**{**MODES["img2img"], "init_image": picture(seed=9)})) != img2img
    assert compute_shape(sd, request(**{**MODES["img2img"], "denoising_strength": 0.3})) != img2img
    inpaint = compute_shape(sd, request(**MODES["inpaint original"]))
    assert inpaint != img2img
    assert compute_shape(sd, request(**{**MODES["inpaint original"], "mask": square_mask(box=(0, 0, 9, 9))})) \
        != inpaint
    assert compute_shape(sd, request(**MODES["hires latent"])) != plain
