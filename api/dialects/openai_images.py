"""OpenAI's image API (`POST /v1/images/generations`, `POST /v1/images/edits`) onto Atelier's image service.

A generation is a txt2img job and an edit an inpaint job, exactly as the UI runs them (validation, batching, cache,
history with the PNG's parameters). OpenAI's fields map onto A1111's: `n` is the batch count, `size` "WxH" the
size; A1111's own settings ride along as extension fields (`negative_prompt`, `steps`, `seed`, `sampler`,
`cfg_scale`). An edit's mask follows OpenAI's convention: its transparent pixels mark what to repaint (or, without
a mask, the image's own transparent pixels do).
"""

from __future__ import annotations

import base64
import re
import time
from pathlib import Path
from typing import Any, Literal

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field

from api.dialects.common import ApiProblem, DialectContext, finish, invalid, run_sync
from contracts import InvalidRequest
from services.images import JobSnapshot

_SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")
# Atelier's field names as this API names them, for errors.
OPENAI_NAMES = {"width": "size", "height": "size", "batch_count": "n", "init_image": "image", "model": "model"}
LINK_TTL_S = 3600


class Extensions(BaseModel):
    """A1111's settings, accepted beside OpenAI's fields (Atelier's extension)."""

    negative_prompt: str = ""
    steps: int | None = None
    seed: int = -1
    sampler: str | None = Field(default=None, description="A sampler by A1111's name (GET /sdapi/v1/samplers).")
    cfg_scale: float | None = None


class GenerationBody(Extensions):
    """POST /v1/images/generations."""

    model_config = ConfigDict(extra="ignore")

    prompt: str
    model: str | None = None
    n: int = 1
    size: str | None = Field(default=None, description='"WxH" (multiples of 8), or "auto": the server\'s default.')
    response_format: Literal["url", "b64_json"] | None = Field(default=None, description="b64_json (the default "
                                                                "here) or url: a link that works for an hour.")
    output_format: str | None = None
    quality: str | None = None
    style: str | None = None
    user: str | None = None


def image_model_ids(ctx: DialectContext) -> list[str]:
    """The ids /v1/models lists for images: the default model, then the checkpoints of the models folder."""
    default = ctx.settings.image_model or ctx.settings.resolved_image_model
    return list(dict.fromkeys([default, ctx.services.default_models["image"], *ctx.services.catalog.models()]))


def model_of(ctx: DialectContext, model: str | None) -> str:
    """The checkpoint for the image service ("" = the default, also for a missing model); a 404 for an unknown one."""
    ids = image_model_ids(ctx)
    if model in (None, "", *ids[:2]):
        return ""
    if model in ids or ctx.services.images.remote_names:
        return str(model)
    raise ApiProblem(404, f"The model {model!r} does not exist here; GET /v1/models lists the image models: "
                          f"{', '.join(ids)}.", field="model", code="model_not_found")


def size_of(size: str | None, defaults: dict[str, Any]) -> tuple[int, int]:
    """(width, height) of "WxH"; the server's default size for none or "auto"; a 400 naming size otherwise."""
    if size in (None, "", "auto"):
        return int(defaults.get("width", 512)), int(defaults.get("height", 512))
    found = _SIZE.match(size)
    if not found:
        raise invalid({"size": f"size must be WIDTHxHEIGHT in pixels, such as 512x512, or auto; got {size!r}."})
    return int(found[1]), int(found[2])


def job_params(ctx: DialectContext, body: GenerationBody | Any, width: int, height: int) -> dict[str, Any]:
    """The image service's fields for an OpenAI request (its extensions included)."""
    defaults = ctx.services.images.defaults
    if body.output_format not in (None, "png"):
        raise invalid({"output_format": "output_format must be png: Atelier stores PNGs with their parameters."})
    return {"prompt": body.prompt, "negative_prompt": body.negative_prompt, "width": width, "height": height,
            "steps": body.steps if body.steps is not None else defaults.get("steps", 20),
            "cfg_scale": body.cfg_scale if body.cfg_scale is not None else defaults.get("cfg_scale", 7.0),
            "sampler": body.sampler or defaults.get("sampler", "Euler a"), "seed": body.seed,
            "batch_count": body.n, "model": model_of(ctx, body.model)}


def validated(ctx: DialectContext, mode: str, params: dict[str, Any]) -> Any:
    """The checked ImageRequest, or a 400 naming each bad field by this API's names."""
    try:
        return ctx.services.images.validate(mode=mode, **params)
    except InvalidRequest as err:
        renamed: dict[str, str] = {}
        for field, message in err.errors.items():  # width and height both become size: keep both messages
            name = OPENAI_NAMES.get(field, field)
            text = message.replace("batch_count", "n")
            renamed[name] = f"{renamed[name]} {text}" if name in renamed else text
        raise invalid(renamed) from None


async def run_images(ctx: DialectContext, request: Request, user: str, req: Any,
                     response_format: str | None) -> dict[str, Any]:
    """Admit and run one image job; OpenAI's answer: each stored PNG base64-encoded, or an expiring link to it."""
    images = ctx.services.images
    handle = await run_sync(ctx.admit, user, "image", "openai", ctx.services.image_slot,
                            lambda ref: images.start(req, user, source="openai", ref=ref))
    snap: JobSnapshot = await finish(handle, request)
    if snap.status != "done":
        raise ApiProblem(503, f"The image job {snap.status}: {snap.error or snap.message}", code="job_failed")
    # The link route's own URL, as this request reached the server (its /v1 mount and host included).
    base = str(request.url_for("image_file", file_id=0)).removesuffix("/0")
    return await run_sync(answer, ctx, user, snap, response_format or "b64_json", base)


def answer(ctx: DialectContext, user: str, snap: JobSnapshot, response_format: str, base: str) -> dict[str, Any]:
    """OpenAI's ImagesResponse for a finished job."""
    job = ctx.services.history.get_job(snap.job_id, user) if snap.job_id is not None else None
    data = []
    for row in (job or {}).get("files", []):
        if response_format == "url":
            expires, signature = ctx.services.image_links.sign(row["id"], LINK_TTL_S)
            data.append({"url": f"{base}/{row['id']}?expires={expires}&signature={signature}",
                         "revised_prompt": None})
        else:
            png = Path(ctx.services.history.file_path(row["file"])).read_bytes()
            data.append({"b64_json": base64.b64encode(png).decode(), "revised_prompt": None})
    return {"created": int(time.time()), "data": data, "output_format": "png",
            "size": f"{(job or {}).get('width')}x{(job or {}).get('height')}", "job_id": snap.job_id}


def edit_images(ctx: DialectContext, image: bytes, mask: bytes | None) -> tuple[Any, Any, bool]:
    """(init image, mask with white = repaint, whether the mask came from the image's transparency) from an edit's
    uploads, OpenAI's way round: transparent pixels are repainted; a 400 naming the field otherwise."""
    from PIL import ImageOps

    uploads = ctx.services.uploads
    try:
        picture = uploads.read_image(image, "image", mask=False)
        if mask is not None:
            uploads.read_image(mask, "mask", mask=True)  # type, size, pixels and decoding checked, as for any upload
        source = _alpha(mask if mask is not None else image, "mask" if mask is not None else "image", ctx)
    except InvalidRequest as err:
        raise invalid(err.errors) from None
    if source is None:
        field = "mask" if mask is not None else "image"
        raise invalid({field: f"{field}: send a PNG with transparency: its fully transparent pixels mark the area "
                              "to repaint (OpenAI's mask convention)."})
    if source.size != picture.size:
        raise invalid({"mask": f"mask: the mask is {source.size[0]}x{source.size[1]} but the image is "
                               f"{picture.size[0]}x{picture.size[1]}; they must be the same size."})
    repaint = ImageOps.invert(source.point(lambda a: 255 if a > 0 else 0))  # alpha 0 -> white (repaint)
    return picture, repaint.convert("L"), mask is None


def _alpha(data: bytes | None, field: str, ctx: DialectContext) -> Any:
    """The alpha channel of an uploaded image, or None when it has none."""
    if data is None:
        return None
    from services.uploads import open_image

    with open_image(data, field, ctx.services.uploads.limits) as opened:
        opened.load()
        has_alpha = opened.mode in ("RGBA", "LA", "PA") or (opened.mode == "P" and "transparency" in opened.info)
        return opened.convert("RGBA").getchannel("A") if has_alpha else None
