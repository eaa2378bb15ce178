"""Image files: written atomically as PNG carrying AUTOMATIC1111's `parameters` text chunk."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from PIL import Image, PngImagePlugin


@dataclass(frozen=True)
class Parameters:
    """The generation settings as AUTOMATIC1111 writes them into a PNG.

    The optional ones are left out of the text when None, as A1111 leaves out what a job did not use: `Denoising
    strength` only for img2img, inpainting and hires fix, the inpainting keys only for inpainting, and so on.
    """

    prompt: str
    negative_prompt: str
    steps: int
    sampler: str
    cfg_scale: float
    seed: int
    width: int  # the requested size; with hires fix the first pass's, as A1111 writes it (Hires upscale gives the rest)
    height: int
    model: str
    model_hash: str | None = None
    vae: str | None = None
    denoising_strength: float | None = None
    mask_mode: str | None = None  # "Inpaint not masked", only when the mask is inverted
    mask_blur: int | None = None  # only when blurred (> 0)
    inpaint_area: str | None = None  # "Only masked", only in that mode
    masked_area_padding: int | None = None
    masked_content: str | None = None  # fill | latent noise | latent nothing; "original" is A1111's unwritten default
    hires_upscale: float | None = None
    hires_steps: int | None = None  # only when not 0 (0: as many as the first pass)
    hires_upscaler: str | None = None
    lora_hashes: str | None = None  # "name: hash, name: hash"
    # Extensions' entries, last as A1111 writes them: {"ControlNet 0": "Module: canny, Model: …", …}.
    controlnet: dict[str, str] | None = None
    refiner: str | None = None  # A1111's "Refiner: name [hash]", with "Refiner switch at"
    refiner_switch_at: float | None = None

    def pairs(self) -> dict[str, str]:
        """The `Key: value` pairs in A1111's order (processing.create_infotext), values as A1111 prints them."""
        values: dict[str, object | None] = {
            "Steps": self.steps, "Sampler": self.sampler, "CFG scale": self.cfg_scale, "Seed": self.seed,
            "Size": f"{self.width}x{self.height}", "Model hash": self.model_hash, "Model": self.model,
            "VAE": self.vae, "Denoising strength": self.denoising_strength,
            # A1111's extra_generation_params, in the order its img2img and txt2img init add them.
            "Mask mode": self.mask_mode, "Mask blur": self.mask_blur, "Inpaint area": self.inpaint_area,
            "Masked area padding": self.masked_area_padding, "Masked content": self.masked_content,
            "Hires upscale": self.hires_upscale, "Hires steps": self.hires_steps,
            "Hires upscaler": self.hires_upscaler, "Lora hashes": self.lora_hashes, **(self.controlnet or {}),
            # Set while sampling in A1111 (processing's apply_refiner), after the entries made before it.
            "Refiner": self.refiner, "Refiner switch at": self.refiner_switch_at,
        }
        return {key: _format(value) for key, value in values.items() if value is not None and value != ""}

    def to_text(self) -> str:
        """Render in A1111's format: prompt, `Negative prompt:` line, then `Key: value` pairs."""
        lines = [self.prompt]
        if self.negative_prompt:
            lines.append(f"Negative prompt: {self.negative_prompt}")
        lines.append(", ".join(f"{key}: {quote(value)}" for key, value in self.pairs().items()))
        return "\n".join(lines)


def _format(value: object) -> str:
    # 7.0 prints as 7 and 0.75 as 0.75, as A1111's UI sliders give them; every parser reads both.
    return f"{value:g}" if isinstance(value, float) else str(value)


def quote(value: str) -> str:
    """A1111's infotext quoting: a value holding its separators becomes a JSON string, so it reads back whole."""
    return json.dumps(value, ensure_ascii=False) if any(c in value for c in ",:\n") else value


def unquote(value: str) -> str:
    """Undo quote(); a value that is not valid JSON stays as it is."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            return str(json.loads(value))
        except ValueError:
            return value
    return value


# A1111's re_param (modules/infotext_utils.py): keys may hold spaces, '-' and '/'; values are quoted or run to a comma.
# Unlike A1111's, a key is at most 64 characters and a quoted value is never re-scanned (possessive): A1111's pattern
# backtracks over every start of a long run of letters, so a 64 KiB line of them took 49 s; this one takes
# milliseconds on any line. A1111's own keys are under 40 characters.
_PAIR = re.compile(r'\s*(\w[\w \-/]{1,63}+):\s*("(?:\\.|[^\\"])++"|[^,]*)(?:,|$)')


def parse_parameters(text: str) -> dict[str, str]:
    """Read A1111's `parameters` text back into {'Prompt', 'Negative prompt', 'Steps', ...}."""
    lines = text.strip().split("\n")
    *head, last = lines
    # As A1111: the last line holds the settings only when it has at least three pairs; else it is prompt text.
    if len(_PAIR.findall(last)) < 3:
        head, last = lines, ""
    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    target = prompt_lines
    for line in head:
        if line.startswith("Negative prompt:"):
            target = negative_lines
            line = line.removeprefix("Negative prompt:").strip()
        target.append(line)
    result = {"Prompt": "\n".join(prompt_lines), "Negative prompt": "\n".join(negative_lines)}
    for key, value in _PAIR.findall(last):
        result[key.strip()] = unquote(value.strip())
    return result


def image_name() -> str:
    """A new stored image's file name: 128 random bits, so that it tells nothing (not the job's number, which
    would tell how many jobs others ran, nor anything guessable about another user's files)."""
    return f"{secrets.token_hex(16)}.png"


def write_png_atomic(image: Image.Image, dest: Path, parameters: Parameters | None = None) -> Path:
    """Write `image` to `dest` via a temp file in the same folder and a rename: never a partial file.

    Without parameters (a job's input image, kept so that the job can be reopened) the PNG carries no text."""
    info = PngImagePlugin.PngInfo()
    if parameters is not None:
        info.add_text("parameters", parameters.to_text())
    with atomic_file(dest) as handle:
        image.save(handle, format="PNG", pnginfo=info)
    return dest


@contextlib.contextmanager
def atomic_file(dest: Path, durable: bool = True) -> Iterator[BinaryIO]:
    """A file to write `dest` through: a temp file beside it (.*.tmp), renamed onto `dest` when the block ends (fsynced
    first where `durable`), removed when it raises: never a partial file at `dest`."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.stem}-", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_parameters(path: Path) -> str | None:
    """The `parameters` text of a PNG, or None when it has none."""
    with Image.open(path) as image:
        return image.info.get("parameters")
