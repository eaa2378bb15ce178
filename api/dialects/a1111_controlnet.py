"""sd-webui-controlnet's own routes under /controlnet, as the extension adds them to AUTOMATIC1111 (its
scripts/api.py): version, model_list, module_list, control_types, settings and detect, so that a script or client
written for A1111 with ControlNet (webuiapi's controlnet_* calls) finds them here.

Each answers from the services the UI uses: the ControlNets of ``<data>/controlnet`` (services/catalog.py), the
preprocessors and their sliders (services/controlnet.py), and detect runs the very preprocessors of
``/controlnet_preview``, its pictures decoded within the upload limits. The same keys and logins as /sdapi/v1, the
same error shape (A1111's, a 422 naming the field), and nothing is stored: detect answers the maps and keeps no file.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Query
from pydantic import BaseModel, Field

from api.dialects.a1111 import A1111Error, caller, error_body, refusal
from api.dialects.common import (
    JSON_ALLOWANCE,
    ApiProblem,
    DialectContext,
    dialect_app,
    image_body_limit,
    invalid,
    run_sync,
)
from contracts import MAX_CONTROLNET_UNITS, InvalidRequest
from services import controlnet
from services.model_slots import ModelUnavailableError
from settings import Settings

PREFIX = "/controlnet"
# The extension's API version (internal_controlnet/external_code.get_api_version), which clients compare.
API_VERSION = 3

__all__ = ["PREFIX", "body_limit", "build_app", "kind", "refusal"]


class DetectBody(BaseModel):
    """/controlnet/detect's body, in the extension's names (webuiapi sends the pictures as controlnet_images)."""

    controlnet_module: str = Field("none", description="The preprocessor, by name or UI label (module_list).")
    controlnet_input_images: list[str] = Field([], description="The pictures, base64 (a data: URL is allowed).")
    controlnet_images: list[str] = Field([], description="Another name for controlnet_input_images (webuiapi's).")
    controlnet_processor_res: float = Field(-1, description="The processor resolution; -1 for the module's default.")
    controlnet_threshold_a: float = Field(-1, description="The module's first slider; -1 for its default.")
    controlnet_threshold_b: float = Field(-1, description="The module's second slider; -1 for its default.")
    controlnet_masks: list[str] = Field([], description="Masks for inpaint preprocessors; none here takes one, so "
                                                        "they are ignored, as the extension ignores them then.")
    low_vram: bool = Field(False, description="Accepted and ignored: the preprocessors here run on the CPU.")


class DetectResponse(BaseModel):
    """The maps, base64 PNGs, one per picture, and "Success"."""

    images: list[str]
    info: str


def kind(method: str, path: str) -> str:
    """Every route counts as a read, as /controlnet_preview of the named API does."""
    return "read"


def body_limit(settings: Settings) -> Callable[[str], int]:
    """detect carries up to MAX_CONTROLNET_UNITS pictures; the other routes take no body."""

    def limit(path: str) -> int:
        return image_body_limit(settings, MAX_CONTROLNET_UNITS) if path.rstrip("/").endswith("/detect") \
            else JSON_ALLOWANCE

    return limit


def build_app(ctx: DialectContext) -> FastAPI:
    """The /controlnet app, bound to the server's services."""
    app = dialect_app("Atelier: sd-webui-controlnet's API", "sd-webui-controlnet's /controlnet routes, served by "
                      "Atelier.", error_body, validation_status=422, error_model=A1111Error)
    me = caller(ctx)  # the keys and logins of /sdapi/v1
    add_listings(app, ctx, me)

    @app.post("/detect", response_model=DetectResponse, summary="Preprocess pictures into control maps")
    async def detect(body: DetectBody, user: str = me) -> dict[str, Any]:
        """Each picture through the preprocessor at the processor resolution, the map as the preprocessor makes it
        (the size of the picture with its short side at the resolution; module none: the picture itself)."""
        return await run_sync(detect_maps, ctx, body)

    return app


def add_listings(app: FastAPI, ctx: DialectContext, me: Any) -> None:
    """version, model_list, module_list, control_types and settings."""

    @app.get("/version", summary="The extension's API version")
    async def version(user: str = me) -> dict[str, int]:
        """The API version of sd-webui-controlnet whose routes and unit fields Atelier follows."""
        return {"version": API_VERSION}

    @app.get("/model_list", summary="ControlNet models")
    async def model_list(update: bool = Query(True), user: str = me) -> dict[str, list[str]]:
        """The ControlNets of <data>/controlnet as a unit's `model` takes them, "name [hash]" (the folder is read
        on every request, so `update` changes nothing)."""
        return {"model_list": await run_sync(model_names, ctx)}

    @app.get("/module_list", summary="Preprocessors")
    async def module_list(alias_names: bool = Query(False), user: str = me) -> dict[str, Any]:
        """The preprocessors (their internal names, or with alias_names their UI labels) and each one's detail:
        model_free and its sliders."""
        return controlnet.modules(alias_names)

    @app.get("/control_types", summary="Control types")
    async def control_types(user: str = me) -> dict[str, Any]:
        """For each control type (Canny, Depth…): its preprocessors and models, and the defaults the UI picks."""
        return {"control_types": controlnet.control_types(await run_sync(model_names, ctx))}

    @app.get("/settings", summary="ControlNet settings")
    async def settings(user: str = me) -> dict[str, int]:
        """How many units a job takes."""
        return {"control_net_unit_count": MAX_CONTROLNET_UNITS}


def model_names(ctx: DialectContext) -> list[str]:
    """The ControlNets a unit may name here (a remote WebUI's own on the a1111 backend); a 503 saying why when the
    WebUI cannot list them."""
    try:
        return ctx.services.images.controlnet_models()
    except ModelUnavailableError as err:
        raise ApiProblem(503, str(err), code="model_unavailable") from None


def detect_maps(ctx: DialectContext, body: DetectBody) -> dict[str, Any]:
    """detect's answer; a 422 naming the field for a bad module, picture, resolution or threshold."""
    if body.controlnet_input_images and body.controlnet_images:
        raise invalid({"controlnet_images": "controlnet_images: send the pictures in controlnet_input_images or "
                                            "controlnet_images, not both."}, status=422)
    pictures = body.controlnet_input_images or body.controlnet_images
    field = "controlnet_images" if body.controlnet_images else controlnet.DETECT_IMAGES
    try:
        maps = controlnet.detect(body.controlnet_module, list(pictures), body.controlnet_processor_res,
                                 body.controlnet_threshold_a, body.controlnet_threshold_b,
                                 ctx.settings.annotators_dir, ctx.services.images.upload_limits)
    except InvalidRequest as err:
        raise invalid({k.replace(controlnet.DETECT_IMAGES, field): v.replace(controlnet.DETECT_IMAGES, field)
                       for k, v in err.errors.items()}, status=422) from None
    return {"images": [_png_base64(image) for image in maps], "info": "Success"}


def _png_base64(image: Any) -> str:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()
