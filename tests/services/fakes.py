"""Scripted backends: replies and images are known in advance, so service logic can be checked exactly."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from PIL import Image, ImageOps

from contracts import ImageRequest, TextOptions
from pipelines.image_base import BatchItem, BatchOutcome, GeneratedImage, generate_one_by_one
from pipelines.reasoning import Chunk
from pipelines.text_base import TextUsage


class FakeStream:
    """Yields the scripted chunks one by one; ends early, as "cancelled", once stop is set."""

    def __init__(self, chunks: list[Chunk], stop: threading.Event, delay: float) -> None:
        self.usage = TextUsage(prompt_tokens=3)
        self._chunks = chunks
        self._stop = stop
        self._delay = delay
        self.closed = False

    def __iter__(self) -> Iterator[Chunk]:
        for chunk in self._chunks:
            if self._stop.is_set():
                self.usage.finish_reason = "cancelled"
                return
            time.sleep(self._delay)
            self.usage.completion_tokens += 1
            if chunk.kind == "reasoning":
                self.usage.reasoning_tokens += 1
            yield chunk
        if self._stop.is_set():
            self.usage.finish_reason = "cancelled"

    def close(self) -> None:
        self.closed = True


class FakeTextBackend:
    """Replies "thinking N" then "answer N" for the N-th call; remembers what it was sent."""

    name = "fake"
    remote = False
    revision = ""

    def __init__(self, delay: float = 0.0, chunks_per_part: int = 2) -> None:
        self.delay = delay
        self.chunks_per_part = chunks_per_part
        self.calls: list[list[dict[str, str]]] = []
        self.loaded = 0
        self.offloaded = 0
        self.unloaded = 0
        self.fail_with: Exception | None = None
        self.on_stream: Callable[[], None] | None = None

    @property
    def model_name(self) -> str:
        return "fake-r1"

    def load(self, report: Callable[[str], None]) -> None:
        self.loaded += 1

    def stream(self, messages: list[dict[str, str]], options: TextOptions, stop: threading.Event) -> FakeStream:
        if self.fail_with is not None:
            raise self.fail_with
        self.calls.append(messages)
        n = len(self.calls)
        chunks = [Chunk("reasoning", f"thinking {n}. ") for _ in range(self.chunks_per_part)]
        chunks += [Chunk("answer", f"answer {n}. ") for _ in range(self.chunks_per_part)]
        return FakeStream(chunks, stop, self.delay)

    def offload(self) -> None:
        self.offloaded += 1

    def unload(self) -> None:
        self.unloaded += 1

    def describe(self) -> dict[str, Any]:
        return {"device": "cpu"}


class FakeImageBackend:
    """Returns images at once, coloured by the seed: storage logic without a model.

    txt2img (and hires fix, at its final size) gives a flat colour; img2img blends the init image, resized to the
    request's size, toward that colour by the denoising strength; inpaint does so only under the (inverted) mask
    and keeps the other pixels, as A1111 pastes the original over them."""

    name = "fake"
    remote = False
    revision = ""
    model_hash = ""

    def __init__(self) -> None:
        self.requests: list[ImageRequest] = []  # every request generated, to tell a cache hit from a call

    @property
    def model_name(self) -> str:
        return "fake-sd"

    def load(self, report: Callable[[str], None]) -> None:
        pass

    def generate(self, req: ImageRequest, seeds: list[int], on_step: Callable[[Any], None],
                 stop: threading.Event) -> list[GeneratedImage]:
        self.requests.append(req)
        return [GeneratedImage(self._image(req, (seed % 256, 0, 0)), seed) for seed in seeds]

    def generate_batch(self, items: list[BatchItem]) -> list[BatchOutcome]:
        return generate_one_by_one(self, items)

    @staticmethod
    def _image(req: ImageRequest, colour: tuple[int, int, int]) -> Image.Image:
        if req.mode == "txt2img":
            return Image.new("RGB", req.hr_size() if req.enable_hr else (req.width, req.height), colour)
        assert req.init_image is not None
        base = req.init_image.convert("RGB").resize((req.width, req.height))
        out = Image.blend(base, Image.new("RGB", base.size, colour), req.denoising_strength)
        if req.mode == "inpaint":
            assert req.mask is not None
            mask = req.mask.convert("L").resize(base.size)
            out = Image.composite(out, base, ImageOps.invert(mask) if req.inpainting_mask_invert else mask)
        return out

    def offload(self) -> None:
        pass

    def unload(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return {"device": "cpu"}
