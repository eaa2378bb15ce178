"""The image-backend interface, its request type, input checks and the backend registry."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from pydantic import BaseModel

from pipelines.registry import Registry

if TYPE_CHECKING:
    from PIL.Image import Image

# AUTOMATIC1111 sampler names, the vocabulary users and the A1111 API already speak.
SAMPLERS: tuple[str, ...] = (
    "Euler a",
    "Euler",
    "DPM++ 2M",
    "DPM++ 2M Karras",
    "DDIM",
    "LMS",
    "Heun",
    "UniPC",
)
MAX_SEED = 2**32 - 1


class JobCancelled(Exception):
    """Raised inside a backend when the job's stop signal is set."""


class InvalidRequest(ValueError):
    """A request that fails its checks; the message says what is allowed."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(errors.values()))


class ImageRequest(BaseModel):
    """One text-to-image job, in AUTOMATIC1111's terms."""

    prompt: str
    negative_prompt: str = ""
    width: int = 512
    height: int = 512
    steps: int = 20
    cfg_scale: float = 7.0
    seed: int = -1
    sampler: str = "Euler a"
    batch_count: int = 1

    def seeds(self, first: int) -> list[int]:
        """A1111's rule: image i of a batch uses seed + i."""
        return [(first + i) % (MAX_SEED + 1) for i in range(self.batch_count)]


@dataclass(frozen=True)
class ImageLimits:
    """The bounds a request is checked against (from settings)."""

    min_size: int = 64
    max_size: int = 2048
    max_steps: int = 500
    max_batch_count: int = 8
    max_prompt_chars: int = 4000
    max_cfg_scale: float = 30.0


def check_inputs(req: ImageRequest, limits: ImageLimits) -> dict[str, str]:
    """Return {field: message} for every bad value; empty when the request is fine."""
    errors: dict[str, str] = {}
    if not req.prompt.strip():
        errors["prompt"] = "prompt must not be empty: describe the image you want."
    for name in ("prompt", "negative_prompt"):
        text = getattr(req, name)
        if len(text) > limits.max_prompt_chars:
            errors[name] = f"{name} is {len(text)} characters; at most {limits.max_prompt_chars} are allowed."
    for name in ("width", "height"):
        value = getattr(req, name)
        if not limits.min_size <= value <= limits.max_size or value % 8:
            errors[name] = (
                f"{name} must be a multiple of 8 between {limits.min_size} and {limits.max_size}, got {value}."
            )
    if not 1 <= req.steps <= limits.max_steps:
        errors["steps"] = f"steps must be between 1 and {limits.max_steps}, got {req.steps}."
    if not 0 <= req.cfg_scale <= limits.max_cfg_scale:
        errors["cfg_scale"] = f"cfg_scale must be between 0 and {limits.max_cfg_scale:g}, got {req.cfg_scale:g}."
    if not -1 <= req.seed <= MAX_SEED:
        errors["seed"] = f"seed must be -1 (random) or between 0 and {MAX_SEED}, got {req.seed}."
    if req.sampler not in SAMPLERS:
        errors["sampler"] = f"sampler {req.sampler!r} is unknown; choose one of: {', '.join(SAMPLERS)}."
    if not 1 <= req.batch_count <= limits.max_batch_count:
        errors["batch_count"] = f"batch_count must be between 1 and {limits.max_batch_count}, got {req.batch_count}."
    return errors


def resolve_seed(seed: int) -> int:
    """-1 means random: pick the seed now so that it can be reported and reused."""
    return random.randint(0, MAX_SEED) if seed == -1 else seed


@dataclass
class StepUpdate:
    """Progress of a running job: step counts over the whole batch, and maybe a preview."""

    step: int
    total: int
    image_index: int
    preview: Image | None = None


ProgressFn = Callable[[StepUpdate], None]


@dataclass
class GeneratedImage:
    """One finished image and the seed that made it."""

    image: Image
    seed: int


@dataclass
class BatchItem:
    """One job's share of a batched pipeline call: its seeds to run now, its progress and its own Stop."""

    req: ImageRequest
    seeds: list[int]
    on_step: ProgressFn
    stop: threading.Event
    done_before: int = 0  # images of this job finished by earlier calls, so progress counts over the whole job
    job_images: int = 0  # images in the whole job; 0: just these seeds

    def step_update(self, per_image: int, done: int, preview: Image | None = None) -> StepUpdate:
        """Progress over the whole job when each of this item's images has finished `done` of `per_image` steps."""
        total_images = self.job_images or len(self.seeds)
        return StepUpdate(step=per_image * self.done_before + done * len(self.seeds), total=per_image * total_images,
                          image_index=self.done_before, preview=preview)


# What a batched call gives back per item: its images, or None when that item was stopped.
BatchOutcome = list[GeneratedImage] | None


def generate_one_by_one(backend: ImageBackend, items: list[BatchItem]) -> list[BatchOutcome]:
    """Run batch members one after another (backends that cannot share a call, such as a remote server)."""
    outcomes: list[BatchOutcome] = []
    for item in items:
        def on_step(update: StepUpdate, item: BatchItem = item) -> None:
            # generate() counts over this item's seeds; shift that onto the whole job.
            per_image = update.total // max(1, len(item.seeds))
            item.on_step(StepUpdate(step=per_image * item.done_before + update.step,
                                    total=per_image * (item.job_images or len(item.seeds)),
                                    image_index=item.done_before + update.image_index, preview=update.preview))

        try:
            outcomes.append(backend.generate(item.req, item.seeds, on_step, item.stop))
        except JobCancelled:
            outcomes.append(None)
    return outcomes


@dataclass
class LoadReport:
    """What a backend tells about its loading, for the health page and the UI."""

    phase: str = ""
    detail: dict[str, str | int | float | bool] = field(default_factory=dict)


class ImageBackend(Protocol):
    """What every image backend offers: load once, then generate jobs (one, or several of one shape at once)."""

    name: str

    @property
    def model_name(self) -> str:
        """The model as written into PNG metadata and history."""
        ...

    def load(self, report: Callable[[str], None]) -> None:
        """Load weights (or check the remote server); call report() with each phase."""
        ...

    def generate(
        self, req: ImageRequest, seeds: list[int], on_step: ProgressFn, stop: threading.Event
    ) -> list[GeneratedImage]:
        """Run the job; raise JobCancelled within one step once stop is set."""
        ...

    def generate_batch(self, items: list[BatchItem]) -> list[BatchOutcome]:
        """Run jobs of one compute shape together, one outcome per item; a stopped item gives None."""
        ...

    def offload(self) -> None:
        """Move the weights to CPU RAM while idle; the next load() moves them back."""
        ...

    def unload(self) -> None:
        """Free the model's memory."""
        ...


IMAGE_BACKENDS: Registry[ImageBackend] = Registry("image", ("pipelines.diffusers_backend", "pipelines.a1111_backend"))
register_image_backend = IMAGE_BACKENDS.register
create_image_backend = IMAGE_BACKENDS.create
image_backend_names = IMAGE_BACKENDS.names
