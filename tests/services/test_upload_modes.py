"""Init images and masks in every mode a PNG, JPEG or WebP file (or an in-process caller) brings them: 16-bit and
float greyscale scaled to 8 bits (PIL's convert clips them, so a 16-bit PNG became pure white), every kind of
transparency flattened on white for an init image and read as the painted part of a mask."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from contracts import ImageLimits, InvalidRequest
from services.images import ImageService
from services.uploads import read_image

# 16-bit grey levels and the 8-bit levels they are: black, dark, mid grey, white (a clip would give 0, 255, 255, 255).
LEVELS16 = np.array([[0, 40 * 257, 128 * 257, 65535]] * 2, dtype=np.uint16)
LEVELS8 = [[0, 40, 128, 255]] * 2


def png(pixels: np.ndarray, colour_type: int, depth: int = 16, trns: bytes | None = None,
        plte: bytes | None = None) -> bytes:
    """A PNG written by hand (PIL cannot write 16-bit RGB, grey+alpha or tRNS chunks): big-endian samples."""
    height = pixels.shape[0]
    rows = pixels.astype(">u2" if depth == 16 else "u1").reshape(height, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", pixels.shape[1], height, depth, colour_type, 0, 0, 0)
    extra = (chunk(b"PLTE", plte) if plte else b"") + (chunk(b"tRNS", trns) if trns is not None else b"")
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + extra + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def pixels(image: Image.Image) -> list:
    return np.asarray(image).tolist()


def grey_rgb(levels: list[list[int]]) -> list:
    return [[[v, v, v] for v in row] for row in levels]


def test_a_16_bit_greyscale_png_is_scaled_not_clipped_as_init_image_and_mask(tmp_path: Path) -> None:
    data = png(LEVELS16, colour_type=0)
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    assert pixels(read_image(data, "init_image")) == grey_rgb(LEVELS8)
    assert pixels(read_image(data, "mask")) == LEVELS8
    path = tmp_path / "mask16.png"  # as /img2img and /inpaint read the uploaded file
    path.write_bytes(data)
    assert pixels(read_image(path, "mask")) == LEVELS8


def test_a_16_bit_greyscale_png_with_a_transparent_level() -> None:
    data = png(LEVELS16, colour_type=0, trns=struct.pack(">H", 40 * 257))  # the dark level is see-through
    assert pixels(read_image(data, "init_image")) == grey_rgb([[0, 255, 128, 255]] * 2)  # flattened on white
    assert pixels(read_image(data, "mask")) == [[255, 0, 255, 255]] * 2  # the opaque part is what was painted


def test_16_bit_rgb_with_a_transparent_colour_and_16_bit_grey_alpha() -> None:
    # PIL keeps each sample's high byte but the transparent colour in 16 bits: 0x8003 is the pixel 128 (not 3).
    levels = np.array([[0, 40 * 257, 0x8003, 65535]] * 2, dtype=np.uint16)
    data = png(np.stack([levels] * 3, axis=-1), colour_type=2, trns=struct.pack(">HHH", *[0x8003] * 3))
    assert pixels(read_image(data, "init_image")) == grey_rgb([[0, 40, 255, 255]] * 2)
    alpha = np.array([[65535, 0, 65535, 0]] * 2, dtype=np.uint16)
    data = png(np.stack([LEVELS16, alpha], axis=-1), colour_type=4)
    assert pixels(read_image(data, "init_image")) == grey_rgb([[0, 255, 128, 255]] * 2)
    assert pixels(read_image(data, "mask")) == [[255, 0, 255, 0]] * 2


def test_8_bit_modes_with_transparency_and_cmyk() -> None:
    levels = np.array(LEVELS8, dtype=np.uint8)
    grey_trns = png(levels, colour_type=0, depth=8, trns=struct.pack(">H", 40))
    assert pixels(read_image(grey_trns, "init_image")) == grey_rgb([[0, 255, 128, 255]] * 2)
    palette = png(np.array([[0, 1, 2, 1]] * 2, dtype=np.uint8), colour_type=3, depth=8,
                  plte=bytes([0, 0, 0, 255, 0, 0, 0, 0, 255]), trns=b"\xff\x00\xff")
    assert pixels(read_image(palette, "init_image"))[0] == [[0, 0, 0], [255, 255, 255], [0, 0, 255], [255, 255, 255]]
    assert pixels(read_image(palette, "mask"))[0] == [255, 0, 255, 0]
    cmyk = io.BytesIO()
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(cmyk, format="JPEG", quality=95)
    red = np.asarray(read_image(cmyk.getvalue(), "init_image"), dtype=int)
    assert np.abs(red - (255, 0, 0)).max() <= 8


def in_process_images() -> list[tuple[Image.Image, list]]:
    """Images a script hands the service directly, with the 8-bit grey levels they stand for."""
    wide = LEVELS16.astype(np.int64)
    return [
        (Image.fromarray(LEVELS16), LEVELS8),
        (Image.fromarray(LEVELS16.astype(">u2")), LEVELS8),  # I;16B
        (Image.frombytes("I;16N", (4, 2), LEVELS16.astype("=u2").tobytes()), LEVELS8),
        (Image.fromarray(wide.astype(np.int32)), LEVELS8),  # I, as older PIL read 16-bit PNGs
        (Image.fromarray((wide / 65535).astype(np.float32)), LEVELS8),  # F, 0-1
        (Image.fromarray(np.array([[np.nan, -1, 0.5, 7]] * 2, dtype=np.float32)), [[0, 0, 128, 255]] * 2),
    ]


@pytest.mark.parametrize(("image", "levels"), in_process_images(), ids=lambda v: getattr(v, "mode", ""))
def test_wide_pil_images_handed_to_the_service_are_scaled(tmp_path: Path, image: Image.Image, levels: list) -> None:
    service = ImageService(None, tmp_path, ImageLimits())  # type: ignore[arg-type]  # validation only
    req = service.validate(prompt="a fox", width=64, height=64, mode="inpaint", init_image=image, mask=image)
    assert req.init_image is not None
    assert req.mask is not None
    assert (pixels(req.init_image), pixels(req.mask)) == (grey_rgb(levels), levels)


def test_a_mode_pil_cannot_convert_is_refused_on_its_field(tmp_path: Path) -> None:
    service = ImageService(None, tmp_path, ImageLimits())  # type: ignore[arg-type]
    premultiplied = Image.new("La", (64, 64))
    with pytest.raises(InvalidRequest) as caught:
        service.validate(prompt="a fox", mode="inpaint", init_image=Image.new("RGB", (64, 64)), mask=premultiplied)
    assert list(caught.value.errors) == ["mask"]
    assert caught.value.errors["mask"].startswith("mask: an image in PIL mode La cannot be read")


def test_the_inpaint_tab_reads_an_uploaded_16_bit_mask_as_the_api_does(tmp_path: Path) -> None:
    import gradio as gr
    from gradio.data_classes import ImageData

    from ui.inpaint_tab import mask_upload, split_editor

    path = tmp_path / "mask16.png"
    path.write_bytes(png(LEVELS16, colour_type=0))
    with gr.Blocks():
        component = mask_upload()
    uploaded = component.preprocess(ImageData(path=str(path), orig_name="mask16.png"))  # what the tab's event gets
    background = Image.new("RGBA", (4, 2), (10, 20, 30, 255))
    init, mask = split_editor({"background": background, "layers": []}, uploaded)
    assert pixels(init) == [[[10, 20, 30]] * 4] * 2
    assert pixels(mask) == LEVELS8


def test_an_unreadable_uploaded_mask_in_the_inpaint_tab_is_a_toast_not_a_crash() -> None:
    import gradio as gr

    from ui.inpaint_tab import split_editor

    with pytest.raises(gr.Error) as caught:
        split_editor({"background": Image.new("RGBA", (8, 8)), "layers": []}, Image.new("La", (8, 8)))
    assert caught.value.message.startswith("mask: an image in PIL mode La cannot be read")
