"""Uploaded images: only PNG/JPEG/WebP, within byte and pixel limits, bombs and damaged files refused clearly."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from contracts import InvalidRequest
from services.uploads import DEFAULT_LIMITS, UploadLimits, Uploads, read_image
from settings import Settings


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def refusal(data: bytes | Path, field: str = "init_image", limits: UploadLimits = DEFAULT_LIMITS) -> str:
    with pytest.raises(InvalidRequest) as caught:
        read_image(data, field, limits)
    assert list(caught.value.errors) == [field]  # one message, on the field that was sent
    message = caught.value.errors[field]
    assert message.startswith(f"{field}: ")
    return message


def png_claiming(width: int, height: int) -> bytes:
    """A tiny valid PNG whose header claims another size: what a decompression bomb looks like before decoding."""
    data = bytearray(encode(Image.new("L", (8, 8)), "PNG"))
    ihdr = 8  # after the signature: length (4), b"IHDR" (4), then width, height
    data[ihdr + 8:ihdr + 16] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr + 4:ihdr + 21]))
    data[ihdr + 21:ihdr + 25] = struct.pack(">I", crc)
    return bytes(data)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_allowed_types_decode_to_rgb(fmt: str) -> None:
    source = Image.new("RGB", (40, 24), (10, 200, 30))
    image = read_image(encode(source, fmt), "init_image")
    assert (image.mode, image.size) == ("RGB", (40, 24))
    assert np.abs(np.asarray(image, dtype=int) - (10, 200, 30)).max() <= 8  # JPEG/WebP are lossy


def test_a_path_reads_like_bytes(tmp_path: Path) -> None:
    path = tmp_path / "in.png"
    path.write_bytes(encode(Image.new("RGB", (16, 16), "blue"), "PNG"))
    assert read_image(path, "init_image").getpixel((0, 0)) == (0, 0, 255)
    assert read_image(str(path), "init_image").size == (16, 16)


def test_transparency_is_flattened_on_white_and_a_mask_comes_from_alpha() -> None:
    strokes = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    strokes.paste((255, 255, 255, 255), (0, 0, 4, 8))  # the left half drawn
    data = encode(strokes, "PNG")
    assert read_image(data, "init_image").getpixel((6, 0)) == (255, 255, 255)
    mask = read_image(data, "mask")
    assert mask.mode == "L"
    assert (mask.getpixel((0, 0)), mask.getpixel((6, 0))) == (255, 0)
    grey = read_image(encode(Image.new("RGB", (8, 8), (255, 255, 255)), "PNG"), "mask")
    assert (grey.mode, grey.getpixel((3, 3))) == ("L", 255)


def test_wrong_types_are_named() -> None:
    gif = encode(Image.new("RGB", (8, 8)), "GIF")
    assert "GIF" in refusal(gif)
    assert "PNG, JPEG or WebP" in refusal(gif)
    assert "PDF" in refusal(b"%PDF-1.7 not an image")
    assert "not an image" in refusal(b"hello, world")
    assert "empty" in refusal(b"")


def test_too_many_bytes_is_refused_before_decoding(tmp_path: Path) -> None:
    data = encode(Image.new("RGB", (64, 64)), "PNG")
    limits = UploadLimits(max_bytes=len(data) - 1)
    assert "larger than" in refusal(data, limits=limits)
    path = tmp_path / "big.png"
    path.write_bytes(data)
    assert "larger than" in refusal(path, limits=limits)
    assert read_image(data, "init_image", UploadLimits(max_bytes=len(data))).size == (64, 64)


def test_too_many_pixels_is_refused() -> None:
    data = encode(Image.new("RGB", (100, 50)), "PNG")
    message = refusal(data, limits=UploadLimits(max_pixels=100 * 50 - 1))
    assert "100x50" in message
    assert "4,999 pixels" in message
    assert read_image(data, "init_image", UploadLimits(max_pixels=100 * 50)).size == (100, 50)


def test_a_decompression_bomb_is_refused_without_decoding() -> None:
    # Past twice PIL's own limit, Image.open raises DecompressionBombError itself.
    huge = max(Image.MAX_IMAGE_PIXELS or 0, 10**8) * 3
    side = int(huge**0.5)
    message = refusal(png_claiming(side, side), limits=UploadLimits(max_pixels=huge * 2))
    assert "decompression bomb" in message
    # Below that, our own (stricter) pixel limit refuses the claimed size.
    assert "5000x5000" in refusal(png_claiming(5000, 5000), "mask")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_a_truncated_file_gets_a_clear_message(fmt: str) -> None:
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    data = encode(noise, fmt)
    message = refusal(data[: len(data) // 2])
    assert "damaged" in message


def test_a_damaged_header_gets_a_clear_message() -> None:
    data = bytearray(encode(Image.new("RGB", (8, 8)), "PNG"))
    data[20] ^= 0xFF  # inside IHDR: its CRC no longer matches
    assert "PNG image is damaged" in refusal(bytes(data))


def test_the_container_object_uses_the_configured_limits(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, upload_max_pixels=10)
    uploads = Uploads(UploadLimits.from_settings(settings))
    with pytest.raises(InvalidRequest, match="at most 10 pixels"):
        uploads.read_image(encode(Image.new("RGB", (4, 4)), "PNG"), "init_image")
    assert Uploads().read_image(encode(Image.new("RGB", (4, 4)), "PNG"), "init_image").size == (4, 4)
