"""Picture work around the passes, as A1111 does it: resize modes, masks, masked content, crops, upscalers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from contracts import ImageRequest
from pipelines import image_ops

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def bands(width: int, height: int, horizontal: bool) -> Image.Image:
    """Red first quarter, green middle half, blue last quarter (of the width, or of the height)."""
    image = Image.new("RGB", (width, height), GREEN)
    if horizontal:
        image.paste(RED, (0, 0, width // 4, height))
        image.paste(BLUE, (width - width // 4, 0, width, height))
    else:
        image.paste(RED, (0, 0, width, height // 4))
        image.paste(BLUE, (0, height - height // 4, width, height))
    return image


def px(image: Image.Image, x: int, y: int) -> tuple[int, ...]:
    return tuple(int(v) for v in np.atleast_1d(np.asarray(image)[y, x]))


@pytest.mark.parametrize("mode", [0, 1, 2])
@pytest.mark.parametrize(("src", "dst"), [((200, 100), (64, 64)), ((100, 200), (64, 96)), ((50, 50), (96, 64)),
                                          ((64, 64), (64, 64))])
def test_every_resize_mode_gives_the_requested_size(mode: int, src: tuple[int, int], dst: tuple[int, int]) -> None:
    assert image_ops.resize_image(mode, Image.new("RGB", src, GREEN), *dst).size == dst


def test_just_resize_stretches_the_whole_picture() -> None:
    out = image_ops.resize_image(0, bands(200, 100, horizontal=True), 100, 100)
    assert px(out, 2, 50) == RED
    assert px(out, 97, 50) == BLUE


def test_crop_and_resize_keeps_the_middle() -> None:
    # 200x100 into 100x100: scaled to cover (unchanged), the middle 100 columns are the green half.
    out = image_ops.resize_image(1, bands(200, 100, horizontal=True), 100, 100)
    assert px(out, 0, 50) == GREEN
    assert px(out, 99, 50) == GREEN


def test_resize_and_fill_fits_the_picture_and_stretches_its_edges_into_the_bars() -> None:
    # 100x200 into 100x100: scaled to 50x100 in the middle; the bars repeat its first and last columns.
    out = image_ops.resize_image(2, bands(100, 200, horizontal=False), 100, 100)
    assert px(out, 50, 2) == RED
    assert px(out, 50, 97) == BLUE
    tall = image_ops.resize_image(2, bands(200, 100, horizontal=True), 100, 200)
    assert px(tall, 2, 5) == RED
    assert px(tall, 97, 195) == BLUE


def test_a_mask_is_rounded_inverted_and_blurred() -> None:
    raw = Image.new("L", (64, 64), 40)  # dark grey rounds to black
    raw.paste(200, (16, 16, 48, 48))  # light grey rounds to white
    sharp = image_ops.prepare_mask(raw, invert=0, blur=0)
    assert set(np.unique(np.asarray(sharp))) == {0, 255}
    assert px(sharp, 32, 32) == (255,)
    assert px(sharp, 2, 2) == (0,)
    inverted = image_ops.prepare_mask(raw, invert=1, blur=0)
    assert px(inverted, 32, 32) == (0,)
    assert px(inverted, 2, 2) == (255,)
    soft = np.asarray(image_ops.prepare_mask(raw, invert=0, blur=4))
    assert 0 < soft[32, 16] < 255  # the edge fades
    assert soft[2, 2] == 0
    assert soft[32, 32] == 255


def test_crop_region_grows_by_the_padding_within_the_picture() -> None:
    mask = Image.new("L", (100, 80))
    mask.paste(255, (10, 30, 20, 40))
    assert image_ops.crop_region(mask, 5) == (5, 25, 25, 45)
    assert image_ops.crop_region(mask, 50) == (0, 0, 70, 80)
    assert image_ops.crop_region(Image.new("L", (8, 8)), 4) is None


@pytest.mark.parametrize(("box", "size"), [((10, 30, 20, 40), (64, 64)), ((10, 30, 50, 40), (64, 32)),
                                           ((0, 0, 10, 70), (64, 64)), ((90, 70, 100, 80), (96, 64))])
def test_the_crop_is_expanded_to_the_processing_aspect_ratio_inside_the_picture(
        box: tuple[int, int, int, int], size: tuple[int, int]) -> None:
    x1, y1, x2, y2 = image_ops.expand_crop_region(box, *size, 100, 80)
    assert 0 <= x1 < x2 <= 100
    assert 0 <= y1 < y2 <= 80
    assert x1 <= box[0]
    assert y1 <= box[1]
    assert x2 >= box[2]
    assert y2 >= box[3]
    if (x2, y2) != (100, 80) and (x1, y1) != (0, 0):
        assert abs((x2 - x1) / (y2 - y1) - size[0] / size[1]) < 0.1


def test_fill_paints_the_masked_area_with_the_colours_around_it() -> None:
    image = Image.new("RGB", (64, 64), BLUE)
    image.paste(RED, (24, 24, 40, 40))
    mask = Image.new("L", (64, 64))
    mask.paste(255, (20, 20, 44, 44))
    r, _g, b = px(image_ops.fill_masked(image, mask), 32, 32)
    assert b > 200
    assert r < 60


def inpaint_request(**changes: object) -> ImageRequest:
    rng = np.random.default_rng(1)
    init = Image.fromarray(rng.integers(0, 256, (80, 96, 3), dtype=np.uint8))
    mask = Image.new("L", (96, 80))
    mask.paste(255, (40, 30, 56, 46))
    return ImageRequest(**{"prompt": "p", "mode": "inpaint", "init_image": init, "mask": mask, "width": 64,
                           "height": 64, "mask_blur": 2, **changes})


def test_whole_picture_inpaint_works_at_the_requested_size_and_pastes_back_over_the_resized_original() -> None:
    req = inpaint_request()
    inputs = image_ops.prepare_inputs(req)
    assert inputs.image.size == inputs.mask.size == (64, 64)
    assert inputs.paste_box is None
    noise = Image.new("RGB", (64, 64), (1, 2, 3))
    out = np.asarray(image_ops.paste_back(noise, inputs))
    keep = np.asarray(inputs.overlay_mask) == 0
    assert keep.any()
    assert (~keep).any()
    assert np.array_equal(out[keep], np.asarray(inputs.original)[keep])
    assert (out[np.asarray(inputs.overlay_mask) == 255] == (1, 2, 3)).all()


def test_only_masked_crops_around_the_mask_and_pastes_back_into_the_full_picture() -> None:
    req = inpaint_request(inpaint_full_res=True, inpaint_full_res_padding=4)
    inputs = image_ops.prepare_inputs(req)
    assert inputs.image.size == inputs.mask.size == (64, 64)
    x1, y1, x2, y2 = inputs.paste_box
    assert (x1, y1) <= (40 - 4 - 2, 30 - 4 - 2)
    assert x2 >= 56 + 4
    assert y2 >= 46 + 4
    assert x2 - x1 == y2 - y1  # expanded to the 64x64 processing ratio
    out = image_ops.paste_back(Image.new("RGB", (64, 64), (1, 2, 3)), inputs)
    assert out.size == (96, 80)  # the picture keeps its own size
    got, original = np.asarray(out), np.asarray(req.init_image)
    keep = np.asarray(inputs.overlay_mask) == 0
    assert np.array_equal(got[keep], original[keep])
    assert (got[np.asarray(inputs.overlay_mask) == 255] == (1, 2, 3)).all()


def test_inverted_mask_repaints_the_outside() -> None:
    inputs = image_ops.prepare_inputs(inpaint_request(inpainting_mask_invert=1, mask_blur=0))
    assert px(inputs.mask, 32, 32) == (0,)
    assert px(inputs.mask, 2, 2) == (255,)


def test_masked_content_other_than_original_starts_from_fill() -> None:
    original = image_ops.prepare_inputs(inpaint_request(inpainting_fill=1, mask_blur=0))
    filled = image_ops.prepare_inputs(inpaint_request(inpainting_fill=0, mask_blur=0))
    inside = (slice(28, 36), slice(28, 36))
    assert not np.array_equal(np.asarray(original.image)[inside], np.asarray(filled.image)[inside])
    outside = (slice(0, 8), slice(0, 8))
    assert np.array_equal(np.asarray(original.image)[outside], np.asarray(filled.image)[outside])


def test_img2img_inputs_are_the_resized_picture_without_paste_back() -> None:
    req = inpaint_request(mode="img2img", mask=None, resize_mode=1)
    inputs = image_ops.prepare_inputs(req)
    assert inputs.image.size == (64, 64)
    assert inputs.mask is None
    picture = Image.new("RGB", (64, 64))
    assert image_ops.paste_back(picture, inputs) is picture


@pytest.mark.parametrize("name", ["Lanczos", "None", "Nearest"])
def test_image_upscalers_reach_the_size(name: str) -> None:
    assert image_ops.upscale_image(bands(64, 48, True), name, 128, 96).size == (128, 96)


@pytest.mark.parametrize("name", list(image_ops.LATENT_MODES))
def test_latent_upscalers_reach_an_eighth_of_the_size(name: str) -> None:
    latents = torch.randn(2, 4, 8, 8)
    assert tuple(image_ops.upscale_latents(latents, name, 128, 96).shape) == (2, 4, 12, 16)


def test_upscaler_models_are_listed_by_file_stem(tmp_path: Path) -> None:
    for name in ("4x-UltraSharp.pth", "RealESRGAN_x2.safetensors", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert image_ops.list_upscalers(tmp_path) == ["4x-UltraSharp", "RealESRGAN_x2"]
    assert image_ops.list_upscalers(tmp_path / "missing") == []
    assert image_ops.list_upscalers(None) == []


def test_an_unknown_upscaler_model_says_which_are_there(tmp_path: Path) -> None:
    (tmp_path / "4x-UltraSharp.pth").write_bytes(b"x")
    with pytest.raises(image_ops.UpscalerUnavailable, match="'nope' is not in .*4x-UltraSharp") as caught:
        image_ops.upscale_image(Image.new("RGB", (8, 8)), "nope", 16, 16, tmp_path)
    assert f"is not in <data>/{tmp_path.name};" in str(caught.value)  # never the absolute path


def test_an_unloadable_upscaler_model_gets_a_clear_message(tmp_path: Path) -> None:
    (tmp_path / "broken.pth").write_bytes(b"not a model")
    needle = "could not be loaded" if importlib.util.find_spec("spandrel") else "needs the spandrel package"
    with pytest.raises(image_ops.UpscalerUnavailable, match=needle):
        image_ops.upscale_image(Image.new("RGB", (8, 8)), "broken", 16, 16, tmp_path)


def test_a_model_upscaler_runs_until_the_size_then_fits_it(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, ...]] = []

    def double(pixels: torch.Tensor) -> torch.Tensor:  # stands in for a 2x spandrel model
        calls.append(tuple(pixels.shape))
        return torch.nn.functional.interpolate(pixels, scale_factor=2, mode="nearest")

    monkeypatch.setattr(image_ops, "load_upscaler", lambda folder, name, device: double)
    out = image_ops.upscale_image(Image.new("RGB", (16, 12), RED), "2x", 56, 40)
    assert out.size == (56, 40)
    assert px(out, 20, 20) == RED
    assert calls == [(1, 3, 12, 16), (1, 3, 24, 32)]  # 16 -> 32 -> 64 >= 56: two runs
