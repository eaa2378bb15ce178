"""Uploaded images (init images, masks, PNG Info): checked for type, size and pixels before they are decoded.

Every refusal is an InvalidRequest({field: message}) that says what was wrong and what is allowed; nothing a client
sends can raise anything else from here.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from contracts import InvalidRequest
from settings import Settings

ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP")
_ALLOWED_NAMES = "a PNG, JPEG or WebP image"
# Signatures of other files people drop by mistake, only to name them in the message.
_OTHER_KINDS: tuple[tuple[bytes, str], ...] = (
    (b"GIF8", "a GIF image"), (b"BM", "a BMP image"), (b"II*\x00", "a TIFF image"), (b"MM\x00*", "a TIFF image"),
    (b"%PDF", "a PDF document"), (b"PK\x03\x04", "a ZIP archive"), (b"<svg", "an SVG drawing"),
    (b"<?xml", "an XML file"),
)
# What PIL raises on damaged or cut-off image data while decoding.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError, MemoryError)


@dataclass(frozen=True)
class UploadLimits:
    """How large an uploaded image may be, in bytes and in pixels (from settings)."""

    max_bytes: int = Settings.model_fields["upload_max_bytes"].default
    max_pixels: int = Settings.model_fields["upload_max_pixels"].default

    @classmethod
    def from_settings(cls, settings: Settings) -> UploadLimits:
        """The limits a server was configured with."""
        return cls(max_bytes=settings.upload_max_bytes, max_pixels=settings.upload_max_pixels)


DEFAULT_LIMITS = UploadLimits()


def _refuse(field: str, message: str) -> InvalidRequest:
    return InvalidRequest({field: f"{field}: {message}"})


def _bomb(field: str, limits: UploadLimits) -> InvalidRequest:
    return _refuse(field, f"the image declares far more pixels than its file holds (a decompression bomb); at most "
                          f"{limits.max_pixels:,} pixels are allowed.")


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def read_bytes(data: bytes | str | Path, field: str, limits: UploadLimits = DEFAULT_LIMITS) -> bytes:
    """The upload's bytes, refused when empty, missing or over the byte limit (a path is not read past it)."""
    if isinstance(data, bytes | bytearray | memoryview):
        blob = bytes(data)
    else:
        path = Path(data)
        try:
            with path.open("rb") as handle:
                blob = handle.read(limits.max_bytes + 1)
        except OSError as err:
            raise _refuse(field, f"the uploaded file could not be read ({err.strerror or err}).") from err
    if not blob:
        raise _refuse(field, f"the uploaded file is empty; send {_ALLOWED_NAMES}.")
    if len(blob) > limits.max_bytes:
        raise _refuse(field, f"the file is larger than the {_megabytes(limits.max_bytes)} allowed for an uploaded "
                             f"image.")
    return blob


def open_image(data: bytes | str | Path, field: str, limits: UploadLimits = DEFAULT_LIMITS,
               check_pixels: bool = True) -> Image.Image:
    """Open (not decode) an upload after the type, byte and pixel checks; its metadata is readable at once.

    check_pixels=False skips the pixel limit, for callers that read metadata only (PIL's own bomb check stays)."""
    blob = read_bytes(data, field, limits)
    try:
        image = Image.open(io.BytesIO(blob), formats=list(ALLOWED_FORMATS))
    except Image.DecompressionBombError as err:
        raise _bomb(field, limits) from err
    except UnidentifiedImageError as err:
        if fmt := _allowed_kind(blob):  # the right signature, but PIL cannot make sense of what follows
            raise _refuse(field, f"the {fmt} image is damaged and cannot be read.") from err
        raise _refuse(field, f"the file is {_kind(blob)}; send {_ALLOWED_NAMES}.") from err
    except _DECODE_ERRORS as err:
        raise _refuse(field, f"the image header is damaged ({err}); send {_ALLOWED_NAMES}.") from err
    width, height = image.size
    if check_pixels and width * height > limits.max_pixels:
        image.close()
        raise _refuse(field, f"the image is {width}x{height} ({width * height:,} pixels); at most "
                             f"{limits.max_pixels:,} pixels are allowed.")
    return image


def read_image(data: bytes | str | Path, field: str, limits: UploadLimits = DEFAULT_LIMITS,
               mask: bool | None = None) -> Image.Image:
    """Decode an uploaded image: RGB (transparency flattened on white, as A1111 does), or L for a mask.

    `mask` defaults to field == "mask". A mask with transparency is read from its alpha channel (drawn strokes on a
    transparent layer, as Gradio's image editor and A1111 send them); else from its grey levels. Raises
    InvalidRequest({field: message}) for a wrong type, a file or image too large, a decompression bomb, or data that
    is cut off or damaged."""
    as_mask = field == "mask" if mask is None else mask
    image = open_image(data, field, limits)
    try:
        with image:
            image.load()
            # Phone photos are stored sideways with an EXIF orientation; the user expects what their viewer shows.
            upright = ImageOps.exif_transpose(image)
            return to_mask(upright) if as_mask else to_rgb(upright)
    except Image.DecompressionBombError as err:
        raise _bomb(field, limits) from err
    except _DECODE_ERRORS as err:
        raise _refuse(field, f"the image could not be decoded; the file is cut off or damaged ({err}).") from err


def _allowed_kind(blob: bytes) -> str:
    """PNG, JPEG or WebP by the file's signature; "" for anything else."""
    if blob.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if blob.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    return "WebP" if blob[:4] == b"RIFF" and blob[8:12] == b"WEBP" else ""


def _kind(blob: bytes) -> str:
    """What a refused file looks like, for the message."""
    if blob[4:8] == b"ftyp":
        return "an ISO media file (HEIC, AVIF or video)"
    return next((name for magic, name in _OTHER_KINDS if blob.startswith(magic)), "not an image that can be read")


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB, transparency flattened on white (A1111's default img2img background)."""
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def to_mask(image: Image.Image) -> Image.Image:
    """L: the alpha channel of an image with transparency (painted strokes), else its grey levels."""
    if _has_alpha(image):
        alpha = image.convert("RGBA").getchannel("A")
        if alpha.getextrema() != (255, 255):  # an opaque alpha says nothing: the grey levels are the mask
            return alpha
    return image.convert("L")


class Uploads:
    """read_image with a server's configured limits (the `uploads` attribute of the Services container)."""

    def __init__(self, limits: UploadLimits | None = None) -> None:
        self.limits = limits or DEFAULT_LIMITS

    def read_image(self, data: bytes | str | Path, field: str, mask: bool | None = None) -> Image.Image:
        """As the module's read_image, under these limits."""
        return read_image(data, field, self.limits, mask)
