"""/api/account: your whole account as one archive (settings, conversations, images), importing such an archive
(from this server or another), and your own settings (retention)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from api.rest.common import BODY, CROSS_SITE, REFUSALS, Asking, SameSite, Served, count_read
from api.rest.history import A_ZIP, stream_export

router = APIRouter()


class Imported(BaseModel):
    """What an import brought in."""

    jobs: int
    images: int
    conversations: int
    messages: int
    collections: int
    settings: int


class Retention(BaseModel):
    """Days after which your images and conversations go (favourites and collections kept): the server's, yours, and
    the one in force (the shorter); null keeps everything."""

    server_days: int | None
    user_days: int | None
    effective_days: int | None


class AccountSettings(BaseModel):
    """Your own settings."""

    retention: Retention


class SettingsChange(BaseModel):
    """Settings to change; null clears yours (the server's then applies)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    retention_days: int | None = Field(description="1 to 36,500 days, or null")


@router.get("/account/export", summary="Your whole account as one zip archive, streamed",
            response_class=StreamingResponse, responses={**A_ZIP, **REFUSALS})
def export(request: Request, services: Served, who: Asking) -> StreamingResponse:
    """Settings, every finished image job with its PNGs and input images, conversations and collections, with a
    manifest of every member's size and sha256; POST it to /api/account/import of any Atelier to bring it all in."""
    count_read(request)
    return stream_export(services.archive.export(who.name))


@router.post("/account/import", summary="Bring an account archive into your account",
             responses={**REFUSALS, **CROSS_SITE, **BODY}, dependencies=[SameSite])
async def import_archive(request: Request, services: Served, who: Asking,
                         archive: Annotated[UploadFile, File(description="a zip from GET /api/account/export")]
                         ) -> Imported:
    """All or nothing: a damaged, foreign or unsafe archive, or one holding an image that fails the upload checks,
    is refused (422, saying why) and nothing is written. Counted as an upload."""
    count_read(request, "upload")
    # Every image is decoded once to be checked: seconds for a large archive, off the event loop.
    counts = await run_in_threadpool(services.archive.import_archive, who.name, archive.file)
    return Imported(**counts)


@router.get("/account/settings", summary="Your settings", responses=REFUSALS)
def settings(request: Request, services: Served, who: Asking) -> AccountSettings:
    """Retention: the server's days, yours, and the shorter that applies."""
    count_read(request)
    return AccountSettings(retention=Retention(**services.retention.describe(who.name)))


@router.patch("/account/settings", summary="Change your settings", responses={**REFUSALS, **CROSS_SITE, **BODY},
              dependencies=[SameSite])
def change_settings(request: Request, services: Served, who: Asking, body: SettingsChange) -> AccountSettings:
    """422 for days outside 1 to 36,500."""
    count_read(request)
    services.user_settings.set(who.name, "retention_days", body.retention_days)
    return AccountSettings(retention=Retention(**services.retention.describe(who.name)))
