"""The image-backend interface, its request type, input checks and the backend registry."""

from __future__ import annotations

import hashlib
import io
import random
import threading
from collections.abc import Callable, Collection, Hashable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from PIL.Image import Image
from pydantic import BaseModel, ConfigDict, Field

from pipelines.loras import check_weights
from pipelines.messages import excerpt
from pipelines.registry import Registry

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
MODES: tuple[str, ...] = ("txt2img", "img2img", "inpaint")
# A1111's resize modes, by their number in its API.
RESIZE_MODES: dict[int, str] = {0: "just resize", 1: "crop and resize", 2: "resize and fill"}
# A1111's "masked content" choices, by their number in its API.
INPAINTING_FILLS: dict[int, str] = {0: "fill", 1: "original", 2: "latent noise", 3: "latent nothing"}
# Hires upscalers built in (A1111's names); upscaler models from a folder add their file stems.
LATENT_UPSCALERS: tuple[str, ...] = ("Latent", "Latent (antialiased)", "Latent (bicubic)",
                                     "Latent (bicubic antialiased)", "Latent (nearest)", "Latent (nearest-exact)")
IMAGE_UPSCALERS: tuple[str, ...] = ("None", "Lanczos", "Nearest")
MAX_MASK_BLUR = 64
MAX_FULL_RES_PADDING = 256
MAX_HR_SCALE = 4.0
# Fields that may differ between the images of one batched pipeline call; everything else shapes the call.
PER_IMAGE_FIELDS = frozenset({"prompt", "negative_prompt", "seed", "batch_count"})


class JobCancelled(Exception):
    """Raised inside a backend when the job's stop signal is set."""


class InvalidRequest(ValueError):
    """A request that fails its checks; the message says what is allowed."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(errors.values()))


def png_bytes(image: Image) -> bytes:
    """The image as PNG bytes: what an input image's digest is taken over and what it is stored as."""
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


class ImageRequest(BaseModel):
    """One txt2img, img2img or inpaint job, in AUTOMATIC1111's terms (its API's names and defaults)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    prompt: str
    negative_prompt: str = ""
    width: int = 512
    height: int = 512
    steps: int = 20
    cfg_scale: float = 7.0
    seed: int = -1
    sampler: str = "Euler a"
    batch_count: int = 1
    mode: Literal["txt2img", "img2img", "inpaint"] = "txt2img"
    # The images stay out of model_dump() (history and cache keys are JSON); image_digests() stands for them.
    init_image: Image | None = Field(default=None, exclude=True)  # required for img2img and inpaint
    denoising_strength: float = 0.75  # img2img/inpaint strength; with enable_hr, the hires pass strength
    resize_mode: int = 0  # 0 just resize, 1 crop and resize, 2 resize and fill
    mask: Image | None = Field(default=None, exclude=True)  # white = repaint (before invert); required for inpaint
    mask_blur: int = 4
    inpainting_fill: int = 1  # 0 fill, 1 original, 2 latent noise, 3 latent nothing
    inpaint_full_res: bool = False  # "Only masked": crop around the mask, paste back
    inpaint_full_res_padding: int = 32
    inpainting_mask_invert: int = 0  # 0 inpaint masked, 1 inpaint not masked
    enable_hr: bool = False
    hr_scale: float = 2.0
    hr_upscaler: str = "Latent"
    hr_second_pass_steps: int = 0  # 0: as many as steps
    model: str = ""  # checkpoint name as listed by /models; "": the configured default
    vae: str = ""  # VAE name as listed by /models; "": the checkpoint's own

    def seeds(self, first: int) -> list[int]:
        """A1111's rule: image i of a batch uses seed + i."""
        return [(first + i) % (MAX_SEED + 1) for i in range(self.batch_count)]

    def settings(self) -> dict[str, Any]:
        """Every setting as JSON-able values: the dump without the two images (see image_digests)."""
        return self.model_dump()

    def image_digests(self) -> dict[str, str]:
        """sha256 hex of each input image's PNG bytes ("" when absent), for cache keys and history."""
        return {name: hashlib.sha256(png_bytes(image)).hexdigest() if image is not None else ""
                for name, image in (("init_image", self.init_image), ("mask", self.mask))}

    def hr_size(self) -> tuple[int, int]:
        """The hires fix's final (width, height): the base size times hr_scale, rounded down to a multiple of 8."""
        return (int(self.width * self.hr_scale) // 8 * 8, int(self.height * self.hr_scale) // 8 * 8)

    def mode_shape(self) -> Hashable:
        """What, beyond txt2img's shape, must match for jobs to share one pipeline call: every setting but the
        per-image ones, and the input images."""
        if self.mode == "txt2img" and not self.enable_hr and not self.model and not self.vae:
            return ()  # today's txt2img jobs keep today's shape
        settings = {k: v for k, v in self.settings().items() if k not in PER_IMAGE_FIELDS}
        return (*sorted(settings.items()), *sorted(self.image_digests().items()))


@dataclass(frozen=True)
class ImageLimits:
    """The bounds a request is checked against (from settings)."""

    min_size: int = 64
    max_size: int = 2048
    max_steps: int = 500
    max_batch_count: int = 8
    max_prompt_chars: int = 4000
    max_cfg_scale: float = 30.0


def check_inputs(req: ImageRequest, limits: ImageLimits,
                 upscalers: Collection[str] | None = ()) -> dict[str, str]:
    """Return {field: message} for every bad value; empty when the request is fine. `upscalers` names the upscaler
    models available for hires fix besides the built-in ones; None leaves the name to a remote server to check."""
    errors: dict[str, str] = {}
    if not req.prompt.strip():
        errors["prompt"] = "prompt must not be empty: describe the image you want."
    for name in ("prompt", "negative_prompt"):
        text = getattr(req, name)
        if len(text) > limits.max_prompt_chars:
            errors[name] = f"{name} is {len(text)} characters; at most {limits.max_prompt_chars} are allowed."
        elif message := check_weights(text):  # every backend, a remote A1111 too, would apply the weight as written
            errors.setdefault(name, f"{name}: {message}")
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
        errors["sampler"] = f"sampler {excerpt(req.sampler)} is unknown; choose one of: {', '.join(SAMPLERS)}."
    if not 1 <= req.batch_count <= limits.max_batch_count:
        errors["batch_count"] = f"batch_count must be between 1 and {limits.max_batch_count}, got {req.batch_count}."
    errors.update(_check_images(req))
    errors.update(_check_mode_numbers(req))
    errors.update(_check_hires(req, limits, upscalers))
    return errors


def _check_images(req: ImageRequest) -> dict[str, str]:
    """The input images the mode needs, and only those."""
    errors: dict[str, str] = {}
    if req.mode in ("img2img", "inpaint") and req.init_image is None:
        errors["init_image"] = f"init_image is required for {req.mode}: give the picture to start from."
    if req.mode == "txt2img" and req.init_image is not None:
        errors["init_image"] = "init_image is only used by img2img and inpaint; set mode to one of them."
    if req.mode == "inpaint" and req.mask is None:
        errors["mask"] = "mask is required for inpaint: paint the area to repaint in white."
    elif req.mode != "inpaint" and req.mask is not None:
        errors["mask"] = f"mask is only used by inpaint, not by {req.mode}; set mode to 'inpaint'."
    elif req.mask is not None:
        low, high = req.mask.convert("L").getextrema()
        # After the invert the white part is repainted; with nothing to repaint the job would only copy the input.
        if (high if not req.inpainting_mask_invert else 255 - low) == 0:
            errors["mask"] = ("mask has nothing to repaint: it is all black" + (" (white, inverted)" if
                              req.inpainting_mask_invert else "") + "; paint the area to repaint in white.")
    return errors


def _check_mode_numbers(req: ImageRequest) -> dict[str, str]:
    """img2img and inpaint settings: their ranges and A1111's numbered choices."""
    errors: dict[str, str] = {}
    if not 0 <= req.denoising_strength <= 1:
        errors["denoising_strength"] = f"denoising_strength must be between 0 and 1, got {req.denoising_strength:g}."
    choices = (("resize_mode", RESIZE_MODES), ("inpainting_fill", INPAINTING_FILLS),
               ("inpainting_mask_invert", {0: "inpaint masked", 1: "inpaint not masked"}))
    for name, named in choices:
        value = getattr(req, name)
        if value not in named:
            listed = ", ".join(f"{number} {label}" for number, label in named.items())
            errors[name] = f"{name} must be one of {listed}; got {value}."
    for name, high in (("mask_blur", MAX_MASK_BLUR), ("inpaint_full_res_padding", MAX_FULL_RES_PADDING)):
        value = getattr(req, name)
        if not 0 <= value <= high:
            errors[name] = f"{name} must be between 0 and {high} pixels, got {value}."
    return errors


def _check_hires(req: ImageRequest, limits: ImageLimits, upscalers: Collection[str] | None) -> dict[str, str]:
    """Hires fix: only for txt2img, a scale whose final size fits, a known upscaler, a step count in range."""
    errors: dict[str, str] = {}
    if req.enable_hr and req.mode != "txt2img":
        errors["enable_hr"] = f"hires fix (enable_hr) only applies to txt2img, not to {req.mode}."
    if not 1 <= req.hr_scale <= MAX_HR_SCALE:
        errors["hr_scale"] = f"hr_scale must be between 1 and {MAX_HR_SCALE:g}, got {req.hr_scale:g}."
    elif req.enable_hr and max(req.hr_size()) > limits.max_size:
        width, height = req.hr_size()
        errors["hr_scale"] = (f"hr_scale {req.hr_scale:g} makes {width}x{height}; each side may be at most "
                              f"{limits.max_size}, so lower hr_scale or the base size.")
    known = (*LATENT_UPSCALERS, *IMAGE_UPSCALERS, *sorted(upscalers or ()))
    if upscalers is not None and req.hr_upscaler not in known:
        errors["hr_upscaler"] = f"hr_upscaler {excerpt(req.hr_upscaler)} is unknown; choose one of: {', '.join(known)}."
    if not 0 <= req.hr_second_pass_steps <= limits.max_steps:
        errors["hr_second_pass_steps"] = (f"hr_second_pass_steps must be between 0 (same as steps) and "
                                          f"{limits.max_steps}, got {req.hr_second_pass_steps}.")
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
