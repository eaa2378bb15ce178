"""OpenAI's API under /v1, so that every OpenAI client (the `openai` SDK, Open WebUI, SillyTavern, LibreChat,
Continue, LangChain) can use Atelier's models: `GET /v1/models`, `POST /v1/chat/completions` (openai_chat.py),
`POST /v1/images/generations` and `/v1/images/edits` (openai_images.py).

Errors come in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`: 400 with `param` naming the field
for any invalid field, 401 without a valid key, 404 for an unknown model, 413 for a body too large, 429 with
Retry-After over a limit or the queue quota, 503 while a model loads or Atelier is busy.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, HTTPException, Path, Query, Request, UploadFile
from fastapi.responses import FileResponse, Response, StreamingResponse
from pydantic import BaseModel

from api.dialects.common import ApiProblem, DialectContext, dialect_app, image_body_limit, invalid, run_sync
from api.dialects.openai_chat import ChatBody, chat_completions, text_model_ids
from api.dialects.openai_images import (
    Extensions,
    GenerationBody,
    edit_images,
    image_model_ids,
    job_params,
    model_of,
    run_images,
    size_of,
    validated,
)
from api.rest.images import send
from settings import Settings

PREFIX = "/v1"
TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
         413: "invalid_request_error", 429: "requests", 503: "server_error"}


class ErrorObject(BaseModel):
    """What went wrong: the message, its type, the field at fault (`param`) and a code."""

    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIError(BaseModel):
    """OpenAI's error shape."""

    error: ErrorObject


def error_body(status: int, message: str, errors: dict[str, str], code: str | None) -> dict[str, Any]:
    """OpenAI's error object; `param` names the (first) field at fault."""
    return {"error": {"message": message, "type": TYPES.get(status, "invalid_request_error"),
                      "param": next(iter(errors), None),
                      "code": code}}


# The codes of the refusals the gateway and the body caps give before a route runs.
REFUSAL_CODES = {404: "not_found", 413: "request_too_large", 429: "rate_limit_exceeded", 503: "server_busy"}


def refusal(status: int, message: str) -> bytes:
    """The refusals made before a route runs (429 over a limit, 413 over a body cap, 503 while the shared state is
    away or too many bodies arrive at once) in OpenAI's shape."""
    return json.dumps(error_body(status, message, {}, REFUSAL_CODES.get(status))).encode()


def kind(method: str, path: str) -> str:
    """The rate limit a request counts against: chat messages, image jobs, or reads."""
    if method == "POST" and path.startswith(f"{PREFIX}/chat/"):
        return "chat"
    if method == "POST" and path.startswith(f"{PREFIX}/images/"):
        return "image"
    return "read"


def body_limit(settings: Settings) -> Callable[[str], int]:
    """The largest body of each route: an edit's carries an image and a mask."""

    def limit(path: str) -> int:
        return image_body_limit(settings, 2 if path.rstrip("/").endswith("/images/edits") else 0)

    return limit


def build_app(ctx: DialectContext) -> FastAPI:
    """The /v1 app, bound to the server's services."""
    app = dialect_app("Atelier: OpenAI-compatible API", "OpenAI's /v1 (models, chat completions, images), served "
                      "by Atelier.", error_body, validation_status=400, error_model=OpenAIError)

    def who(request: Request) -> str:
        return ctx.user(request, realm="Atelier /v1")

    me = Depends(who)
    started = int(time.time())

    @app.get("/models", summary="The models")
    async def models(user: str = me) -> dict[str, Any]:
        """The text model(s) and the image model(s), in OpenAI's list shape."""
        return {"object": "list", "data": await run_sync(model_list, ctx, started)}

    @app.get("/models/{model_id:path}", summary="One model")
    async def model(model_id: str, user: str = me) -> dict[str, Any]:
        """One model by id; 404 for an unknown one."""
        found = [m for m in await run_sync(model_list, ctx, started) if m["id"] == model_id]
        if not found:
            raise ApiProblem(404, f"The model {model_id!r} does not exist here.", field="model",
                             code="model_not_found")
        return found[0]

    @app.post("/chat/completions", summary="A chat reply", response_model=None,
              responses={200: {"content": {"application/json": {}, "text/event-stream": {}},
                               "description": "A chat.completion, or with stream a stream of chunks"}})
    async def chat(body: ChatBody, request: Request, user: str = me) -> dict[str, Any] | StreamingResponse:
        """A reply from the text model, streamed as server-sent events with `stream`; each call is a conversation
        in your history."""
        return await chat_completions(ctx, request, user, body)

    add_image_routes(app, ctx, me)
    return app


def model_list(ctx: DialectContext, created: int) -> list[dict[str, Any]]:
    """/v1/models' entries: the text model's ids, then the image models'."""
    entries = [(i, "text") for i in text_model_ids(ctx)] + [(i, "image") for i in image_model_ids(ctx)]
    return [{"id": model_id, "object": "model", "created": created, "owned_by": "atelier", "type": what}
            for model_id, what in entries]


def add_image_routes(app: FastAPI, ctx: DialectContext, me: Any) -> None:
    """Generations, edits, and the expiring links to their files."""

    @app.post("/images/generations", summary="Generate images from a prompt")
    async def generations(body: GenerationBody, request: Request, user: str = me) -> dict[str, Any]:
        """A txt2img job of `n` images; A1111's settings ride along as extension fields."""
        width, height = size_of(body.size, ctx.services.images.defaults)
        req = await run_sync(lambda: validated(ctx, "txt2img", job_params(ctx, body, width, height)))
        return await run_images(ctx, request, user, req, body.response_format)

    @app.post("/images/edits", summary="Repaint the transparent part of an image")
    async def edits(request: Request, image: Annotated[UploadFile, File(description="A PNG, JPEG or WebP.")],
                    prompt: Annotated[str, Form()],
                    mask: Annotated[UploadFile | None, File(description="Transparent = repaint.")] = None,
                    model: Annotated[str | None, Form()] = None, n: Annotated[int, Form()] = 1,
                    size: Annotated[str | None, Form()] = None,
                    response_format: Annotated[str | None, Form()] = None,
                    extensions: Annotated[Extensions, Depends(form_extensions)] = None,  # type: ignore[assignment]
                    user: str = me) -> dict[str, Any]:
        """An inpaint job: OpenAI's mask convention (transparent pixels are repainted)."""
        if response_format not in (None, "url", "b64_json"):
            raise invalid({"response_format": "response_format must be url or b64_json."})
        picture, repaint = await image.read(), await mask.read() if mask is not None else None
        req = await run_sync(edit_request, ctx, picture, repaint, prompt, model, n, size, extensions)
        return await run_images(ctx, request, user, req, response_format)

    @app.get("/images/files/{file_id}", summary="An image by its expiring link", response_class=FileResponse,
             responses={200: {"content": {"image/png": {}}}})
    async def image_file(file_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
                         expires: Annotated[int, Query(ge=0, le=2**63 - 1)],
                         signature: Annotated[str, Query(pattern=r"^[0-9a-f]{64}$")]) -> Response:
        """The PNG a generation's `url` names, without a key, until the link expires."""
        key = await run_sync(ctx.services.image_links.store_key, file_id, expires, signature)
        # The PNG as /api/images sends it: the file, a presigned redirect (ATELIER_S3_PRESIGN) or the object streamed.
        return await run_sync(send, ctx.services, key, HTTPException(404, "This image link is unknown or has expired."))


def form_extensions(negative_prompt: Annotated[str, Form()] = "", steps: Annotated[int | None, Form()] = None,
                    seed: Annotated[int, Form()] = -1, sampler: Annotated[str | None, Form()] = None,
                    cfg_scale: Annotated[float | None, Form()] = None) -> Extensions:
    """The extension fields of a multipart edit."""
    return Extensions(negative_prompt=negative_prompt, steps=steps, seed=seed, sampler=sampler, cfg_scale=cfg_scale)


def edit_request(ctx: DialectContext, image: bytes, mask: bytes | None, prompt: str, model: str | None, n: int,
                 size: str | None, extensions: Extensions) -> Any:
    """The checked inpaint request of an edit: the image's size (to a multiple of 8) unless `size` says otherwise."""
    picture, repaint, from_transparency = edit_images(ctx, image, mask)
    limits = ctx.services.images.limits
    if size in (None, "", "auto"):
        width, height = (max(limits.min_size, min(limits.max_size, side // 8 * 8)) for side in picture.size)
    else:
        width, height = size_of(size, {})
    body = GenerationBody(prompt=prompt, model=model, n=n, **extensions.model_dump())
    params = job_params(ctx, body, width, height) | {"model": model_of(ctx, model), "init_image": picture,
                                                      "mask": repaint,
                                                      # A transparent hole has nothing to keep: start from noise.
                                                      "inpainting_fill": 2 if from_transparency else 1}
    return validated(ctx, "inpaint", params)
