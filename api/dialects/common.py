"""What the OpenAI and AUTOMATIC1111 adapters share: who is asking, the body cap, admission (busy, model loading,
queue quota) and waiting for a job, so that each adapter only translates its dialect into the service call the UI
makes and the result back.

A request reaches a route here after the gateway resolved its user (login cookie, HTTP basic or an API key) and
counted it against the user's rate limit. Admission then does what Gradio's queue and the validators do for the
UI: refuse while Atelier is busy, and take a place under the user's queue quota, counted together with the user's
jobs in Gradio's queue (services/running.py). The job itself runs in the services, exactly as a UI job does.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request

from api.auth import Authenticator
from services.container import Services
from services.jobs import JobHandle
from services.model_slots import ModelSlot, ModelState
from services.running import Quota, QuotaExceeded
from settings import Settings

H = TypeVar("H", bound=JobHandle[Any])
# How much a JSON body may hold besides its base64 images: prompts and settings are tens of KB at most.
JSON_ALLOWANCE = 1024 * 1024
BUSY_RETRY_S = 10
HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}
LOADING_RETRY_S = 5


class ApiProblem(Exception):
    """A refusal that each adapter renders in its own error shape: status, message, the field at fault, and a code."""

    def __init__(self, status: int, message: str, field: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None, errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field, self.code = status, message, field, code
        self.headers = headers or {}
        self.errors = errors or ({field: message} if field else {})


def invalid(errors: dict[str, str], status: int = 400) -> ApiProblem:
    """A refusal naming every bad field (the first is `field`), from a service's {field: message}."""
    field = next(iter(errors))
    return ApiProblem(status, " ".join(errors.values()), field=field, code="invalid_value", errors=errors)


@dataclass
class DialectContext:
    """What the adapters need from the server: the services, who is asking, and admission."""

    services: Services
    auth: Authenticator
    quota: Quota
    queue_size: Callable[[], int]  # jobs waiting in Gradio's queue
    max_queue: int
    accounts_required: bool

    @property
    def settings(self) -> Settings:
        """The server's settings."""
        return self.services.settings

    def user(self, request: Request, realm: str = "Atelier") -> str:
        """Who is asking ('' in single-user mode); a 401 when accounts exist and the request has no valid login or
        key."""
        user = self.auth.user_of(request)
        if user is None and self.accounts_required:
            raise ApiProblem(401, "Send an API key (Authorization: Bearer atl_…; create one in the account panel or "
                                  "with `python app.py users key create NAME`), HTTP basic credentials, or the "
                                  "login cookie.", code="invalid_api_key",
                             headers={"www-authenticate": f'Bearer realm="{realm}"'})
        return user or ""

    def admit(self, user: str, kind: str, source: str, slot: ModelSlot[Any], start: Callable[[str], H]) -> H:
        """Start a checked job as the UI would, once admitted: refused while the model loads (503) or Atelier is
        busy (503), or when the user is at the queue quota (429); `start(ref)` calls the service with the quota
        place's ref."""
        ready_or_loading(slot)
        waiting = self.queue_size() + sum(len(refs) for refs in self.services.running.reserved().values())
        if waiting >= self.max_queue:
            raise ApiProblem(503, f"Atelier is busy: {self.max_queue} jobs are already waiting. Try again shortly.",
                             code="server_busy", headers={"retry-after": str(BUSY_RETRY_S)})
        try:
            ref = self.services.running.reserve(user, kind, source, self.quota)
        except QuotaExceeded as err:
            raise ApiProblem(429, str(err), code="quota_exceeded",
                             headers={"retry-after": str(BUSY_RETRY_S)}) from None
        try:
            return start(ref)
        except BaseException:
            self.services.running.release(ref)
            raise


def ready_or_loading(slot: ModelSlot[Any]) -> None:
    """A 503 with Retry-After while the model is loading (a model that is not loaded, or failed before, is loaded by
    the job itself, as a UI job does)."""
    status = slot.status()
    if status.state is ModelState.LOADING:
        raise ApiProblem(503, f"The {status.kind} model is loading ({status.phase or status.model}); try again in a "
                              "few seconds.", code="model_loading", headers={"retry-after": str(LOADING_RETRY_S)})


def image_body_limit(settings: Settings, images: int) -> int:
    """The largest body that carries `images` uploads at their byte limit, base64-encoded, and the settings."""
    return images * (settings.upload_max_bytes * 4 // 3 + 4) + JSON_ALLOWANCE


def decode_base64(value: str, field: str, max_bytes: int) -> bytes:
    """The bytes of a base64 string, with or without a `data:…;base64,` prefix; a 4xx naming `field` otherwise."""
    text = value.split(",", 1)[1] if value.startswith("data:") and "," in value else value
    if len(text) > max_bytes * 4 // 3 + 4:
        raise invalid({field: f"{field}: the image is larger than the {max_bytes / (1024 * 1024):.1f} MB allowed "
                              f"for an uploaded image."}, status=413)
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise invalid({field: f"{field}: not valid base64; send the image file's bytes base64-encoded (a "
                              f"data:image/png;base64, prefix is allowed)."}) from None


async def finish(handle: H, request: Request) -> Any:
    """The job's final snapshot; if the client goes away first, the job is stopped (as a closed tab stops it)."""
    async def gone() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    job, watch = asyncio.ensure_future(handle.final()), asyncio.ensure_future(gone())
    try:
        await asyncio.wait({job, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not job.done():
            handle.stop()
    # Let the cancelled watcher end; asyncio.wait raises nothing of the watcher's own, so a cancel of this request
    # itself still goes through (a suppress around `await watch` swallowed that too).
    await asyncio.wait({watch})
    return await job


async def run_sync(fn: Callable[..., Any], *args: Any) -> Any:
    """A blocking service call (database, files) in a worker thread, off the event loop."""
    import anyio

    return await anyio.to_thread.run_sync(fn, *args)


# A dialect's error body for (status, message, the problem's fields by name); each adapter writes its own shape.
ErrorBody = Callable[[int, str, dict[str, str], "str | None"], dict[str, Any]]


def validation_errors(err: RequestValidationError | ValidationError) -> dict[str, str]:
    """{field: message} from pydantic's errors, the field as a dotted path without FastAPI's "body"/"query"."""
    errors: dict[str, str] = {}
    for item in err.errors():
        loc = [str(part) for part in item.get("loc", ()) if part not in ("body", "query", "path")]
        field = ".".join(loc) or "body"
        message = item.get("msg", "invalid value")
        if item.get("type") == "json_invalid":
            field, message = "body", "the body is not valid JSON"
        errors.setdefault(field, f"{field}: {message}")
    return errors


def dialect_app(title: str, description: str, error_body: ErrorBody, validation_status: int,
                error_model: type[BaseModel]) -> FastAPI:
    """A FastAPI app for one dialect (mounted under its prefix): every refusal in its error shape (`error_model`,
    documented on every route), and its own OpenAPI document at /openapi.json and docs at /docs. Its bodies are
    capped per route before it reads them (api/internal_routes.py, with the gateway Dialect's body_limit)."""
    refusals: dict[int | str, dict[str, Any]] = {
        status: {"model": error_model, "description": text} for status, text in (
            (validation_status, "A field is invalid (named in the error)"), (401, "No valid API key or login"),
            (403, "Not allowed"), (404, "No such model or file"), (413, "The body is too large"),
            (429, "Over a rate limit or the queue quota; Retry-After says when to try again"),
            (503, "A model is loading, Atelier is busy, or the job failed; Retry-After when known"))}
    app = FastAPI(title=title, description=description, docs_url="/docs", redoc_url=None,
                  openapi_url="/openapi.json", responses=refusals)

    def reply(problem: ApiProblem) -> JSONResponse:
        # A bad field is a 400 to OpenAI and a 422 to AUTOMATIC1111, wherever it was found.
        status = validation_status if problem.code == "invalid_value" and problem.status in (400, 422) \
            else problem.status
        content = error_body(status, problem.message, problem.errors, problem.code)
        return JSONResponse(content, status_code=status, headers=problem.headers)

    async def on_problem(_: Request, err: Exception) -> JSONResponse:
        return reply(err if isinstance(err, ApiProblem) else ApiProblem(500, str(err)))

    async def on_validation(_: Request, err: Exception) -> JSONResponse:
        assert isinstance(err, RequestValidationError)
        return reply(invalid(validation_errors(err), status=validation_status))

    async def on_http(_: Request, err: Exception) -> JSONResponse:
        assert isinstance(err, StarletteHTTPException)
        if err.status_code == 400:  # FastAPI's own: a body it could not parse (not UTF-8, a broken form)
            return reply(invalid({"body": "body: the request body could not be read; send JSON (UTF-8 text), or "
                                          "for edits a multipart form."}))
        detail = err.detail if isinstance(err.detail, str) else json.dumps(err.detail)
        return reply(ApiProblem(err.status_code, detail, code=HTTP_CODES.get(err.status_code),
                                headers=dict(err.headers or {})))

    app.add_exception_handler(ApiProblem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    return app
