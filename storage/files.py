"""Image files: written atomically as PNG carrying AUTOMATIC1111's `parameters` text chunk."""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, PngImagePlugin


@dataclass(frozen=True)
class Parameters:
    """The generation settings as AUTOMATIC1111 writes them into a PNG."""

    prompt: str
    negative_prompt: str
    steps: int
    sampler: str
    cfg_scale: float
    seed: int
    width: int
    height: int
    model: str

    def to_text(self) -> str:
        """Render in A1111's format: prompt, `Negative prompt:` line, then `Key: value` pairs."""
        lines = [self.prompt]
        if self.negative_prompt:
            lines.append(f"Negative prompt: {self.negative_prompt}")
        lines.append(
            f"Steps: {self.steps}, Sampler: {self.sampler}, CFG scale: {self.cfg_scale:g}, "
            f"Seed: {self.seed}, Size: {self.width}x{self.height}, Model: {_quote(self.model)}"
        )
        return "\n".join(lines)


def _quote(value: str) -> str:
    # A1111 quotes values that contain its separators so that its parser reads them back whole.
    return f'"{value}"' if any(c in value for c in ',:"') else value


_PAIR = re.compile(r'\s*([\w ]+):\s*("(?:\\.|[^"])*"|[^,]*)(?:,|$)')


def parse_parameters(text: str) -> dict[str, str]:
    """Read A1111's `parameters` text back into {'Prompt', 'Negative prompt', 'Steps', ...}."""
    lines = text.strip().split("\n")
    *head, last = lines
    if not _PAIR.match(last) or ":" not in last:
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
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        result[key.strip()] = value
    return result


def write_png_atomic(image: Image.Image, dest: Path, parameters: Parameters) -> Path:
    """Write `image` to `dest` via a temp file in the same folder and a rename: never a partial file."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", parameters.to_text())
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.stem}-", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            image.save(handle, format="PNG", pnginfo=info)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, dest)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return dest


def read_parameters(path: Path) -> str | None:
    """The `parameters` text of a PNG, or None when it has none."""
    with Image.open(path) as image:
        return image.info.get("parameters")
