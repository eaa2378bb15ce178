"""Atelier's request contracts: what a client may ask for, the bounds and choice lists it is checked against, and
the error that says what is wrong.

Every layer imports this module (ui/ and api/ to build forms and messages, services/ to validate, pipelines/ to
run), and it imports nothing of Atelier, so that no layer has to reach into another for these names. The choice
lists also reach the React client, through the `/choices` endpoint, so that it never keeps a copy.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import random
import re
from collections.abc import Collection, Hashable
from dataclasses import dataclass
from typing import Any, Literal

from PIL.Image import Image
from pydantic import BaseModel, ConfigDict, Field

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
# A1111's "Mask mode" choices (inpainting_mask_invert), by their number in its API.
MASK_MODES: dict[int, str] = {0: "inpaint masked", 1: "inpaint not masked"}
ROLES: tuple[str, ...] = ("system", "user", "assistant")
# Prompt assist's idea: a few words, not a prompt.
MAX_IDEA_CHARS = 1000
# LoRA weights people use: 0 to 1.5 for most LoRAs, up to about ±5 for "slider" LoRAs; ±10 leaves room above that.
MAX_LORA_WEIGHT = 10.0
# The prompt tags whose weights a LoRA applies: AUTOMATIC1111's <lora:name:weight> (<lora:name:te:unet> with separate
# text-encoder and UNet weights), and <lyco:…>, its other name for the same thing, which a remote A1111 applies too.
WEIGHTED_LORA_TAG = re.compile(r"<(?:lora|lyco):([^>]+)>", re.IGNORECASE)
# How much of a value the user sent a message echoes (see excerpt).
EXCERPT_CHARS = 40
# A word's attention weight in the prompt syntax ("(word:1.3)", nested brackets multiplied): people use 0.5 to 2;
# ±10 leaves room above that while staying far from what overflows float16 (a weight of 1e400 is infinity, and an
# infinite or huge weight turns every pixel black).
MAX_ATTENTION_WEIGHT = 10.0
# ControlNet (sd-webui-controlnet's names and ranges): units per job, a unit's weight, its modes.
MAX_CONTROLNET_UNITS = 4
DEFAULT_REFINER_SWITCH_AT = 0.8  # A1111's "Switch at" default
MAX_CONTROL_WEIGHT = 2.0
CONTROL_MODES: tuple[str, ...] = ("Balanced", "My prompt is more important", "ControlNet is more important")
CONTROL_RESIZE_MODES: tuple[str, ...] = ("Just Resize", "Crop and Resize", "Resize and Fill")


class InvalidRequest(ValueError):
    """A request that fails its checks; the message says what is allowed."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(errors.values()))



def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """`value` as a quoted excerpt of at most `limit` characters ('…' marks a cut), control characters escaped: how
    a message names what a user sent (an attacker's megabyte of text is not echoed back). Messages stay plain text;
    the Gradio UI escapes them as a whole where they become HTML (ui/common.py)."""
    text = str(value)
    cut = text if len(text) <= limit else text[:limit - 1] + "…"
    return repr(cut)


def lora_tag_weights(tag: str, args: str) -> list[float]:
    """A LoRA tag's te and unet weights as written (empty ones left out), `args` being what follows its kind; a
    ValueError saying what is allowed for one that is not a finite number within ±MAX_LORA_WEIGHT (nan, inf and huge
    numbers turn every pixel black)."""
    weights = []
    for text in [p.strip() for p in args.split(":")][1:3]:
        if not text:
            continue
        try:
            weight = float(text)
        except ValueError:
            weight = math.nan
        if not (math.isfinite(weight) and -MAX_LORA_WEIGHT <= weight <= MAX_LORA_WEIGHT):
            raise ValueError(f"the LoRA tag {excerpt(tag)} has weight {excerpt(text)}; a weight is a number between "
                             f"{-MAX_LORA_WEIGHT:g} and {MAX_LORA_WEIGHT:g}, written as <lora:name:0.8>.")
        weights.append(weight)
    return weights


def check_lora_weights(text: str) -> str:
    """The message for a LoRA weight in `text` (a prompt) that is out of bounds, or ''; with or without a LoRA
    folder here, since a remote A1111 server applies the weights as written."""
    try:
        for match in WEIGHTED_LORA_TAG.finditer(text):
            lora_tag_weights(match.group(0), match.group(1))
    except ValueError as err:
        return str(err)
    return ""


# AUTOMATIC1111's prompt syntax (modules/prompt_parser.py): what pipelines/prompts.py encodes and what the check
# below bounds. Its tokens, in the order they must be tried.
_ATTENTION = re.compile(
    r"""
    \\\( | \\\) | \\\[ | \\\] | \\\\ | \\      # escapes (and a lone backslash)
    | \( | \[                                  # openers
    | :\s*([+-]?[.\d]+)\s*\)                   # ":1.2)" closes a round bracket with an explicit weight
    | \) | \]                                  # closers
    | [^\\()\[\]:]+                            # plain text
    | :                                        # a colon that is not a weight
    """,
    re.VERBOSE,
)
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)
ROUND = 1.1
SQUARE = 1 / 1.1
BREAK_MARK = -1.0


def parse_attention(text: str) -> list[tuple[str, float]]:
    """Split a prompt into (text, weight) runs by A1111's rules; ``("BREAK", -1.0)`` marks a chunk break."""
    res: list[list[Any]] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def multiply(start: int, factor: float) -> None:
        for run in res[start:]:
            run[1] *= factor

    for match in _ATTENTION.finditer(text):
        piece, weight = match.group(0), match.group(1)
        if piece.startswith("\\"):
            res.append([piece[1:], 1.0])  # a lone backslash is dropped, as in A1111
        elif piece == "(":
            round_open.append(len(res))
        elif piece == "[":
            square_open.append(len(res))
        elif weight is not None and round_open:
            try:
                multiply(round_open.pop(), float(weight))
            except ValueError:  # "(a:1.2.3)": not a number, A1111 would fail; keep it as text
                res.append([piece, 1.0])
        elif piece == ")" and round_open:
            multiply(round_open.pop(), ROUND)
        elif piece == "]" and square_open:
            multiply(square_open.pop(), SQUARE)
        else:
            for i, part in enumerate(_BREAK.split(piece)):
                if i:
                    res.append(["BREAK", BREAK_MARK])
                res.append([part, 1.0])
    for start in round_open:
        multiply(start, ROUND)
    for start in square_open:
        multiply(start, SQUARE)
    if not res:
        res = [["", 1.0]]
    merged = [res[0]]
    for run in res[1:]:  # join neighbours of equal weight, as A1111 does
        if run[1] == merged[-1][1] and run[1] != BREAK_MARK:
            merged[-1][0] += run[0]
        else:
            merged.append(run)
    return [(str(t), float(w)) for t, w in merged]


def check_attention_weights(text: str) -> str:
    """The message for a word of `text` (a prompt, its LoRA tags aside) whose attention weight, brackets and numbers
    multiplied, is not a finite number within ±MAX_ATTENTION_WEIGHT, or ''."""
    for piece, weight in parse_attention(WEIGHTED_LORA_TAG.sub("", text)):
        if (piece, weight) == ("BREAK", BREAK_MARK) or not piece.strip():
            continue
        if not (math.isfinite(weight) and abs(weight) <= MAX_ATTENTION_WEIGHT):
            return (f"the attention weight of {excerpt(piece.strip())} is {weight:g}; a weight (its brackets and "
                    f"numbers multiplied) is a number between {-MAX_ATTENTION_WEIGHT:g} and "
                    f"{MAX_ATTENTION_WEIGHT:g}, written as (words:1.2).")
    return ""


def png_bytes(image: Image) -> bytes:
    """The image as PNG bytes: what an input image's digest is taken over and what it is stored as."""
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


class ControlNetUnit(BaseModel):
    """One ControlNet unit, in sd-webui-controlnet's names (internal_controlnet/args.py): a picture, the preprocessor
    (`module`) that makes it a control map, the ControlNet (`model`, "name [hash]") that reads the map, how strongly
    (`weight`) and when (`guidance_start`..`guidance_end`, fractions of the steps), the control mode, how the map is
    fitted (`resize_mode`), and the preprocessor's resolution and thresholds (-1: the module's default). A checked
    unit (pipelines/control_units.py, through services.images) holds the module's values with defaults filled."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    image: Image | None = Field(default=None, exclude=True)  # None: the img2img picture, as the extension does
    module: str = "none"
    model: str = "None"
    weight: float = 1.0
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    control_mode: str = "Balanced"
    resize_mode: str = "Crop and Resize"
    pixel_perfect: bool = False
    processor_res: int | float = -1
    threshold_a: int | float = -1
    threshold_b: int | float = -1
    enabled: bool = True

    def infotext(self) -> str:
        """sd-webui-controlnet's serialisation for the PNG's `ControlNet N` entry; '' when a value holds ',' or ':'
        (it would not read back, and the extension writes nothing for such a unit either)."""
        values = {" ".join(w.capitalize() for w in name.split("_")): str(getattr(self, name))
                  for name in CONTROL_INFOTEXT_FIELDS}
        if any("," in v or ":" in v for v in values.values()):
            return ""
        return ", ".join(f"{key}: {value}" for key, value in values.items())


# The unit fields the infotext carries, in the extension's order (ControlNetUnit.infotext_fields).
CONTROL_INFOTEXT_FIELDS = ("module", "model", "weight", "resize_mode", "processor_res", "threshold_a", "threshold_b",
                           "guidance_start", "guidance_end", "pixel_perfect", "control_mode")


def control_infotext(units: list[ControlNetUnit]) -> dict[str, str]:
    """{"ControlNet 0": "Module: …", …}: the enabled units, numbered by their place in the list, as the extension
    writes them into the PNG's parameters."""
    return {f"ControlNet {i}": text for i, unit in enumerate(units) if unit.enabled and (text := unit.infotext())}


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
    controlnet: list[ControlNetUnit] = Field(default_factory=list)  # checked units; their images are digests
    # A1111's refiner: another SDXL checkpoint ("" = none) that takes over at this fraction of the steps.
    refiner_checkpoint: str = ""
    refiner_switch_at: float = DEFAULT_REFINER_SWITCH_AT

    def seeds(self, first: int) -> list[int]:
        """A1111's rule: image i of a batch uses seed + i."""
        return [(first + i) % (MAX_SEED + 1) for i in range(self.batch_count)]

    def settings(self) -> dict[str, Any]:
        """Every setting as JSON-able values: the dump without the two images (see image_digests); the refiner's
        fields only when there is one, so that other jobs keep their cache keys and history settings."""
        dump = self.model_dump()
        if not self.refiner_checkpoint:
            del dump["refiner_checkpoint"], dump["refiner_switch_at"]
        return dump

    def image_digests(self) -> dict[str, str]:
        """sha256 hex of each input image's PNG bytes ("" when absent), for cache keys and history."""
        digests = {name: hashlib.sha256(png_bytes(image)).hexdigest() if image is not None else ""
                   for name, image in (("init_image", self.init_image), ("mask", self.mask))}
        for i, unit in enumerate(self.controlnet):  # only where there are units: other jobs keep their keys
            if unit.image is not None:
                digests[f"controlnet.{i}.image"] = hashlib.sha256(png_bytes(unit.image)).hexdigest()
        return digests

    def active_units(self) -> list[ControlNetUnit]:
        """The enabled ControlNet units, in order."""
        return [unit for unit in self.controlnet if unit.enabled]

    def hr_size(self) -> tuple[int, int]:
        """The hires fix's final (width, height): the base size times hr_scale, rounded down to a multiple of 8."""
        return (int(self.width * self.hr_scale) // 8 * 8, int(self.height * self.hr_scale) // 8 * 8)

    def mode_shape(self) -> Hashable:
        """What, beyond txt2img's shape, must match for jobs to share one pipeline call: every setting but the
        per-image ones, and the input images."""
        if self.mode == "txt2img" and not (self.enable_hr or self.model or self.vae or self.controlnet
                                           or self.refiner_checkpoint):
            return ()  # today's txt2img jobs keep today's shape
        settings = {k: v for k, v in self.settings().items() if k not in PER_IMAGE_FIELDS}
        # Hashable; with the unit images' digests below, a batch never mixes units.
        settings["controlnet"] = json.dumps(settings["controlnet"], sort_keys=True)
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
        # Every backend, a remote A1111 too, applies the weights as written.
        elif message := check_lora_weights(text) or check_attention_weights(text):
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
    errors.update(_check_control_units(req))
    errors.update(_check_refiner(req))
    return errors


def _check_refiner(req: ImageRequest) -> dict[str, str]:
    """The refiner's switch point, and the modes it runs in (txt2img and img2img, as the base's hand-off)."""
    if not req.refiner_checkpoint:
        return {}
    errors: dict[str, str] = {}
    if not 0 < req.refiner_switch_at < 1:
        errors["refiner_switch_at"] = ("refiner_switch_at must be between 0 and 1 (the fraction of the steps after "
                                       f"which the refiner takes over, e.g. 0.8), got {req.refiner_switch_at:g}.")
    if req.enable_hr:
        errors["refiner_checkpoint"] = ("refiner_checkpoint: a refiner with hires fix is not supported yet; turn "
                                        "one of them off.")
    elif req.mode == "inpaint":
        errors["refiner_checkpoint"] = ("refiner_checkpoint: a refiner is not supported in inpaint yet; use it in "
                                        "txt2img or img2img.")
    return errors


def _check_control_units(req: ImageRequest) -> dict[str, str]:
    """How many units, and a picture for each enabled one (txt2img has no img2img picture to fall back on); a unit's
    own fields are checked where its module's sliders are known (pipelines/control_units.py)."""
    if len(req.controlnet) > MAX_CONTROLNET_UNITS:
        return {"controlnet": f"controlnet has {len(req.controlnet)} units; at most {MAX_CONTROLNET_UNITS} are "
                              "allowed."}
    errors: dict[str, str] = {}
    for i, unit in enumerate(req.controlnet):
        if unit.enabled and unit.image is None and req.mode == "txt2img":
            errors[f"controlnet.{i}.image"] = (f"ControlNet unit {i}: image is required in txt2img (img2img and "
                                               "inpaint use their picture when a unit has none).")
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
               ("inpainting_mask_invert", MASK_MODES))
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




class TextOptions(BaseModel):
    """Sampling settings for one reply; the defaults are DeepSeek's recommendation for R1."""

    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 1024
    # Reasoning tokens after which the backend forces "</think>", so the model has to answer.
    thinking_budget: int | None = None
    # None: a fresh random stream each time; a number makes a reply reproducible on the same machine.
    seed: int | None = None


@dataclass(frozen=True)
class TextLimits:
    """The bounds options and messages are checked against (from settings)."""

    max_new_tokens: int = 8192
    max_message_chars: int = 20000


def check_text_options(opts: TextOptions, limits: TextLimits) -> dict[str, str]:
    """Return {field: message} for every bad option; empty when the options are fine."""
    errors: dict[str, str] = {}
    if not 0 <= opts.temperature <= 2:
        errors["temperature"] = (
            f"temperature must be between 0 (greedy) and 2, got {opts.temperature:g}; R1 works best at 0.6."
        )
    if not 0 < opts.top_p <= 1:
        errors["top_p"] = f"top_p must be greater than 0 and at most 1, got {opts.top_p:g}."
    if not 1 <= opts.max_new_tokens <= limits.max_new_tokens:
        errors["max_new_tokens"] = (
            f"max_new_tokens must be between 1 and {limits.max_new_tokens}, got {opts.max_new_tokens}."
        )
    budget = opts.thinking_budget
    if budget is not None and not 1 <= budget <= limits.max_new_tokens:
        errors["thinking_budget"] = (
            f"thinking_budget must be empty (no limit) or between 1 and {limits.max_new_tokens}, got {budget}."
        )
    if opts.seed is not None and not 0 <= opts.seed <= MAX_SEED:
        errors["seed"] = f"seed must be empty (random) or between 0 and {MAX_SEED}, got {opts.seed}."
    return errors


def check_messages(messages: list[dict[str, str]], limits: TextLimits) -> dict[str, str]:
    """Return {field: message} for a malformed conversation; empty when it can be sent to a model."""
    if not messages:
        return {"messages": "messages must not be empty: send at least one user message."}
    errors: dict[str, str] = {}
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            errors[f"{where}.role"] = f"{where}.role must be one of {', '.join(ROLES)}, got {excerpt(role)}."
        if not isinstance(content, str):
            errors[f"{where}.content"] = f"{where}.content must be text, got {type(content).__name__}."
        elif len(content) > limits.max_message_chars:
            errors[f"{where}.content"] = (
                f"{where}.content is {len(content)} characters; at most {limits.max_message_chars} are allowed."
            )
    last = messages[-1]
    if last.get("role") != "user":
        errors.setdefault("messages", "the last message must be from the user: the model replies to it.")
    elif isinstance(last.get("content"), str) and not last["content"].strip():
        errors.setdefault("messages", "the last user message must not be empty: ask the model something.")
    return errors




ChatMode = Literal["send", "regenerate", "edit"]


class ChatRequest(BaseModel):
    """One chat turn, checked (services.chat.ChatService.check): send a message, regenerate the last reply, or edit
    the last message and answer it again."""

    message: str | None = None  # send and edit: the user's words; regenerate: None
    conversation_id: int | None = None  # None: a new conversation (send only)
    mode: ChatMode = "send"
    options: TextOptions = Field(default_factory=TextOptions)


class PromptAssistRequest(BaseModel):
    """An idea for the text model to turn into an image prompt, checked (services.chat.ChatService.check_idea)."""

    idea: str
    options: TextOptions | None = None  # None: the server's default sampling


def choices(upscaler_models: Collection[str] = ()) -> dict[str, Any]:
    """The choice lists a client offers, with their labels, as JSON: every client reads them from here (the Gradio UI
    directly, the React client and scripts through `/choices`), so none keeps a copy. `upscaler_models` are the
    upscaler files a server has besides the built-in upscalers."""
    numbered = {"resize_modes": {n: label.capitalize() for n, label in RESIZE_MODES.items()},
                "inpainting_fills": INPAINTING_FILLS, "mask_modes": {n: label.capitalize() for n, label in
                                                                    MASK_MODES.items()}}
    return {
        "modes": list(MODES),
        "samplers": list(SAMPLERS),
        **{name: [{"value": n, "label": label} for n, label in table.items()] for name, table in numbered.items()},
        "upscalers": [*LATENT_UPSCALERS, *IMAGE_UPSCALERS, *upscaler_models],
    }
