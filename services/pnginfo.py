"""PNG Info: the generation settings an Atelier or AUTOMATIC1111 image carries, as request fields in A1111's API names.

A1111 (and Atelier) write them as the PNG text chunk `parameters`; for JPEG and WebP A1111 puts the same text in the
EXIF UserComment, which is read too.

A PNG's chunks are walked here, not decoded by PIL: each is checked against its CRC up to the closing IEND chunk (so a
cut-off or damaged file is called that, not "without parameters"), text chunks after the pixels are found too, and
the pixels are never decoded. The parameters text may be at most MAX_TEXT_BYTES: what is read (a compressed chunk is
inflated no further) and what /png_info returns stay small, whatever the file holds.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from PIL import Image

from contracts import SAMPLERS, InvalidRequest
from pipelines.control_units import ControlUnitError, parse_infotext
from services.uploads import DEFAULT_LIMITS, UploadLimits, open_image, read_bytes
from storage.files import parse_parameters

_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286
_SIZE = re.compile(r"^(\d+)x(\d+)$")
_CONTROLNET_KEY = re.compile(r"ControlNet \d{1,2}")  # sd-webui-controlnet's "ControlNet 0", "ControlNet 1", …
# A1111 infotext key -> (API name, type). Keys not listed here come back under "extra", as written.
_FIELDS: dict[str, tuple[str, type]] = {
    "Steps": ("steps", int), "CFG scale": ("cfg_scale", float), "Seed": ("seed", int),
    "Model": ("model", str), "Model hash": ("model_hash", str), "VAE": ("vae", str), "VAE hash": ("vae_hash", str),
    "Denoising strength": ("denoising_strength", float), "Mask blur": ("mask_blur", int),
    "Masked area padding": ("inpaint_full_res_padding", int), "Hires upscale": ("hr_scale", float),
    "Hires steps": ("hr_second_pass_steps", int), "Hires upscaler": ("hr_upscaler", str),
    "Refiner": ("refiner_checkpoint", str), "Refiner switch at": ("refiner_switch_at", float),
}
_MASKED_CONTENT = {"fill": 0, "original": 1, "latent noise": 2, "latent nothing": 3}
_INPAINT_KEYS = ("Mask blur", "Mask mode", "Inpaint area", "Masked area padding", "Masked content")
_HIRES_KEYS = ("Hires upscale", "Hires steps", "Hires upscaler", "Hires resize")
# A1111's infotext is a few KB (Atelier's prompts are at most 4,000 characters each); 64 KiB leaves room for long ones.
MAX_TEXT_BYTES = 64 * 1024
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PARAMETERS = b"parameters"


def read_text(data: bytes | str | Path, field: str = "image", limits: UploadLimits = DEFAULT_LIMITS) -> str:
    """The raw `parameters` text of an image; InvalidRequest({field: message}) when it has none, is damaged, holds
    more than MAX_TEXT_BYTES of it, or is no image."""
    blob = read_bytes(data, field, limits)
    if blob.startswith(_PNG_SIGNATURE):
        (text, keywords), kind = _png_parameters(blob, field), "PNG"
    else:
        # Only the metadata is read, never the pixels: a large A1111 upscale is fine here.
        # PIL refuses a JPEG or WebP cut off before its pixels (WebP keeps its EXIF after them).
        with open_image(blob, field, limits, check_pixels=False) as image:
            text, keywords, kind = image.info.get("parameters") or _exif_comment(image), set(image.info), image.format
        if isinstance(text, str) and len(text.encode("utf-8", "replace")) > MAX_TEXT_BYTES:
            raise _too_long(field)
    if isinstance(text, str) and text.strip():
        return text
    hint = " (it holds a ComfyUI workflow, which is not read here)" if "workflow" in keywords else ""
    raise _refuse(field, f"this {kind or 'image'} carries no generation parameters{hint}; PNG Info reads the "
                         f"'parameters' text that Atelier and AUTOMATIC1111 write into their images.")


def _refuse(field: str, message: str) -> InvalidRequest:
    return InvalidRequest({field: f"{field}: {message}"})


def _too_long(field: str) -> InvalidRequest:
    return _refuse(field, f"its parameters text is over {MAX_TEXT_BYTES // 1024} KiB, the most PNG Info reads "
                          f"(Atelier and AUTOMATIC1111 write a few KB).")


def _png_chunks(blob: bytes, field: str) -> Iterator[tuple[bytes, memoryview]]:
    """Each chunk's type and data, from IHDR to IEND, each checked against its CRC; InvalidRequest saying where a
    damaged or cut-off file goes wrong."""
    view, pos = memoryview(blob), len(_PNG_SIGNATURE)
    while True:
        if pos + 8 > len(blob):
            raise _refuse(field, f"the PNG is cut off: it ends after {len(blob):,} bytes, before its closing IEND "
                                 f"chunk.")
        length, kind = struct.unpack(">I4s", view[pos:pos + 8])
        if not kind.isalpha() or (pos == len(_PNG_SIGNATURE)) != (kind == b"IHDR"):
            raise _refuse(field, f"the PNG is damaged: byte {pos:,} does not start a valid chunk.")
        end = pos + 12 + length
        if end > len(blob):
            raise _refuse(field, f"the PNG is cut off: it ends after {len(blob):,} bytes, inside its "
                                 f"{kind.decode()} chunk.")
        data = view[pos + 8:end - 4]
        if zlib.crc32(data, zlib.crc32(kind)) != struct.unpack(">I", view[end - 4:end])[0]:
            raise _refuse(field, f"the PNG is damaged: its {kind.decode()} chunk at byte {pos:,} fails its "
                                 f"checksum.")
        yield kind, data
        if kind == b"IEND":
            return
        pos = end


def _png_parameters(blob: bytes, field: str) -> tuple[str | None, set[str]]:
    """The first `parameters` text chunk's text (tEXt, zTXt or iTXt) or None, and the keywords of all text chunks;
    the whole file is checked first."""
    found: tuple[bytes, memoryview] | None = None
    keywords: set[str] = set()
    for kind, data in _png_chunks(blob, field):
        if kind in (b"tEXt", b"zTXt", b"iTXt"):
            keyword = bytes(data[:80]).partition(b"\0")[0]
            keywords.add(keyword.decode("latin-1"))
            if found is None and keyword == _PARAMETERS:
                found = kind, data[len(_PARAMETERS) + 1:]
    return (_chunk_text(*found, field) if found else None), keywords


def _chunk_text(kind: bytes, body: memoryview, field: str) -> str:
    """A text chunk's text after its keyword, inflated when compressed, within MAX_TEXT_BYTES."""
    if kind == b"tEXt":
        return _capped(bytes(body), field).decode("latin-1")
    if kind == b"zTXt":  # compression method (0), then the zlib stream
        return _inflate(body[1:], field).decode("latin-1")
    compressed, rest = body[:1] == b"\x01", bytes(body[2:])  # iTXt: flag, method, language\0, keyword\0, text
    text = rest.split(b"\0", 2)[2] if rest.count(b"\0") >= 2 else b""
    return (_inflate(text, field) if compressed else _capped(text, field)).decode("utf-8", "replace")


def _capped(text: bytes, field: str) -> bytes:
    if len(text) > MAX_TEXT_BYTES:
        raise _too_long(field)
    return text


def _inflate(stream: bytes | memoryview, field: str) -> bytes:
    """A compressed text chunk inflated up to MAX_TEXT_BYTES and no further (a small chunk may claim gigabytes)."""
    inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(stream, MAX_TEXT_BYTES + 1)
    except zlib.error as err:
        raise _refuse(field, "the PNG is damaged: its parameters text cannot be decompressed.") from err
    if len(text) > MAX_TEXT_BYTES:
        raise _too_long(field)
    if not inflater.eof:
        raise _refuse(field, "the PNG is damaged: its parameters text is cut off.")
    return text


def read(data: bytes | str | Path, field: str = "image", limits: UploadLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    """The image's settings as a dict in A1111's API names, plus "parameters" (the raw text), "mode" (the tab it
    came from: txt2img, img2img or inpaint) and "extra" (keys Atelier has no field for, such as Version)."""
    return parse(read_text(data, field, limits))


def parse(text: str) -> dict[str, Any]:
    """A1111 infotext -> request fields; values that do not parse stay, as text, under "extra"."""
    pairs = parse_parameters(text)
    result: dict[str, Any] = {"prompt": pairs.pop("Prompt"), "negative_prompt": pairs.pop("Negative prompt")}
    extra: dict[str, str] = {}
    for key, value in pairs.items():
        if key in _FIELDS:
            name, kind = _FIELDS[key]
            try:
                result[name] = kind(value)
            except ValueError:
                extra[key] = value
        elif key == "Size" and (size := _SIZE.match(value)):
            result["width"], result["height"] = int(size[1]), int(size[2])
        elif key == "Lora hashes":
            result["lora_hashes"] = _lora_hashes(value)
        elif (unit := _control_unit(key, value)) is not None:
            result.setdefault("controlnet", []).append(unit)
        elif key not in ("Sampler", "Schedule type", "Mask mode", "Inpaint area", "Masked content"):
            extra[key] = value
    if "Sampler" in pairs:
        result["sampler_name"] = _sampler(pairs["Sampler"], pairs.get("Schedule type", ""))
        if result["sampler_name"] == pairs["Sampler"] and "Schedule type" in pairs:
            extra["Schedule type"] = pairs["Schedule type"]
    hires = any(key in pairs for key in _HIRES_KEYS)
    inpaint = any(key in pairs for key in _INPAINT_KEYS)
    result["mode"] = "inpaint" if inpaint else "img2img" if "Denoising strength" in pairs and not hires else "txt2img"
    result["enable_hr"] = hires
    if hires:
        # What A1111 leaves unwritten: as many second-pass steps as the first, and its default latent upscale.
        result.setdefault("hr_second_pass_steps", 0)
        result.setdefault("hr_upscaler", "Latent")
    if inpaint:
        # Likewise for inpainting: no blur, the original content, the whole picture, the masked part repainted.
        result.setdefault("mask_blur", 0)
        result["inpainting_fill"] = _MASKED_CONTENT.get(pairs.get("Masked content", "original"), 1)
        result["inpaint_full_res"] = pairs.get("Inpaint area") == "Only masked"
        result["inpainting_mask_invert"] = int(pairs.get("Mask mode") == "Inpaint not masked")
    for key in ("Masked content", "Inpaint area", "Mask mode"):
        if key in pairs and not inpaint:
            extra[key] = pairs[key]
    result["extra"] = extra
    result["parameters"] = text
    return result


def _control_unit(key: str, value: str) -> dict[str, Any] | None:
    """A ``ControlNet N`` entry as sd-webui-controlnet writes it, read back into a unit's fields (without its
    picture, which a PNG does not carry); None for any other key, or an entry that does not read as a unit."""
    if not _CONTROLNET_KEY.fullmatch(key):
        return None
    try:
        return parse_infotext(value).model_dump()
    except (ControlUnitError, ValueError):
        return None


def infotext_fields(text: str) -> dict[str, str]:
    """An infotext's fields as written (Prompt, Negative prompt, Steps, Size, Model, …), with A1111's png-info API's
    Size-1 and Size-2 for the size."""
    pairs = parse_parameters(text)
    size = _SIZE.match(pairs.get("Size", ""))
    if size:
        pairs["Size-1"], pairs["Size-2"] = size[1], size[2]
    return pairs


def _sampler(name: str, schedule: str) -> str:
    # A1111 1.9+ writes the schedule apart ("Sampler: DPM++ 2M, Schedule type: Karras"); Atelier's sampler list, as
    # older A1111, names the pair ("DPM++ 2M Karras").
    combined = f"{name} {schedule}"
    return combined if schedule and combined in SAMPLERS else name


def _lora_hashes(value: str) -> dict[str, str]:
    """'name: hash, name: hash' -> {name: hash}."""
    hashes: dict[str, str] = {}
    for item in value.split(","):
        name, sep, digest = item.rpartition(":")
        if sep and name.strip():
            hashes[name.strip()] = digest.strip()
    return hashes


def _exif_comment(image: Image.Image) -> str | None:
    """The EXIF UserComment (where A1111 puts the parameters of JPEG and WebP images), decoded."""
    try:
        raw = image.getexif().get_ifd(_EXIF_IFD).get(_USER_COMMENT)
    except Exception:  # a damaged EXIF block is the same as none
        return None
    if isinstance(raw, str):
        return raw
    if not isinstance(raw, bytes) or len(raw) < 8:
        return None
    prefix, body = raw[:8], raw[8:]
    if prefix == b"UNICODE\x00":
        # piexif, which A1111 uses, writes UTF-16 big-endian; some tools write little-endian with a BOM.
        encoding = "utf-16" if body[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-16-be"
        return body.decode(encoding, errors="replace").rstrip("\x00")
    return body.decode("utf-8", errors="replace").rstrip("\x00")
