"""Uploaded images (init images, masks, PNG Info): checked for type, size and pixels before they are decoded.

Every refusal is an InvalidRequest({field: message}) that says what was wrong and what is allowed; nothing a client
sends can raise anything else from here.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from contracts import InvalidRequest
from services.editor_blobs import BlobBudget, PendingBlobs
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

    def convert(image: Image.Image) -> Image.Image:
        # Phone photos are stored sideways with an EXIF orientation; the user expects what their viewer shows.
        upright = ImageOps.exif_transpose(image)
        return to_mask(upright, field) if as_mask else to_rgb(upright, field)

    return _decode(data, field, limits, convert)


def read_as(data: bytes | str | Path, field: str, limits: UploadLimits = DEFAULT_LIMITS,
            mode: str = "RGBA") -> Image.Image:
    """Decode an upload into `mode` as it is, after the same checks (no EXIF turn, no flattening): the image
    editor's canvas pieces, whose transparency is the strokes."""
    return _decode(data, field, limits, lambda image: image.convert(mode))


def _decode(data: bytes | str | Path, field: str, limits: UploadLimits,
            convert: Callable[[Image.Image], Image.Image]) -> Image.Image:
    """`convert` of the decoded upload, once its type, bytes and pixels passed (InvalidRequest otherwise)."""
    image = open_image(data, field, limits)
    try:
        with image:
            image.load()
            return convert(image)
    except Image.DecompressionBombError as err:
        raise _bomb(field, limits) from err
    except InvalidRequest:
        raise
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


# Modes PIL's convert() cannot bring to 8 bits: it clips them at 255, so a 16-bit greyscale PNG turned white.
_WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


def _narrow(image: Image.Image) -> Image.Image:
    """8-bit L from a 16-bit, 32-bit or float greyscale image, scaled rather than clipped: integers are read as
    16-bit values (0-65535, as PNG stores them), floats as 0-1 (as Gradio and scikit-image read float images). A
    PNG's transparent grey level becomes an alpha channel (LA). Other modes come back as they are, but for the
    transparent colour of a 16-bit RGB PNG, which PIL keeps in 16 bits while it keeps the high byte of each pixel."""
    transparent = image.info.get("transparency")
    if image.mode == "RGB" and isinstance(transparent, tuple) and max(transparent) > 255:
        image = image.copy()  # not the caller's image: its info changes
        image.info["transparency"] = tuple(v >> 8 for v in transparent)
    if image.mode not in _WIDE_MODES:
        return image
    values = np.nan_to_num(np.asarray(image, dtype=np.float32))
    scale = 255.0 if image.mode == "F" else 255 / 65535
    grey = Image.fromarray(np.clip(np.rint(values * scale), 0, 255).astype(np.uint8))
    if isinstance(transparent, int) and image.mode != "F":
        return Image.merge("LA", (grey, Image.fromarray(np.where(values == transparent, 0, 255).astype(np.uint8))))
    return grey


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in _ALPHA_MODES or "transparency" in image.info


def _convert(image: Image.Image, mode: str, field: str) -> Image.Image:
    try:
        return image.convert(mode)
    except ValueError as err:  # PIL has no conversion (La, LAB to L): only an in-process caller can send these
        raise _refuse(field, f"an image in PIL mode {image.mode} cannot be read; send {_ALLOWED_NAMES}, or an RGB, "
                             f"RGBA or L image.") from err


def to_rgb(image: Image.Image, field: str = "init_image") -> Image.Image:
    """RGB, transparency flattened on white (A1111's default img2img background); 16-bit and float greyscale scaled
    to 8 bits."""
    image = _narrow(image)
    if _has_alpha(image):
        rgba = _convert(image, "RGBA", field)
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return _convert(image, "RGB", field)


def to_mask(image: Image.Image, field: str = "mask") -> Image.Image:
    """L: the alpha channel of an image with transparency (painted strokes), else its grey levels (16-bit and float
    greyscale scaled to 8 bits)."""
    image = _narrow(image)
    if _has_alpha(image):
        alpha = _convert(image, "RGBA", field).getchannel("A")
        if alpha.getextrema() != (255, 255):  # an opaque alpha says nothing: the grey levels are the mask
            return alpha
    return _convert(image, "L", field)


class Uploads:
    """read_image with a server's configured limits (the `uploads` attribute of the Services container)."""

    def __init__(self, limits: UploadLimits | None = None) -> None:
        self.limits = limits or DEFAULT_LIMITS
        # The image editor's uploaded pieces until its event reads them.
        self.blobs = PendingBlobs(BlobBudget.for_uploads(self.limits.max_bytes))

    def read_image(self, data: bytes | str | Path, field: str, mask: bool | None = None) -> Image.Image:
        """As the module's read_image, under these limits."""
        return read_image(data, field, self.limits, mask)

    def read_as(self, data: bytes | str | Path, field: str, mode: str = "RGBA") -> Image.Image:
        """As the module's read_as, under these limits."""
        return read_as(data, field, self.limits, mode)

    def check(self, data: bytes | str | Path, field: str) -> None:
        """The checks read_image makes before it decodes (type, bytes, pixels from the header); InvalidRequest when
        one fails."""
        open_image(data, field, self.limits).close()
