"""/api/history: your image jobs, newest first a page at a time, or searched (words, filters, a cursor); favourites,
deleting many at once, and a zip of their PNGs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from api.rest.common import (
    BODY,
    CROSS_SITE,
    MAX_ID,
    REFUSALS,
    Asking,
    ItemRoutes,
    SameSite,
    Served,
    count_read,
    declare_item_routes,
)

router = APIRouter()

MAX_IDS = 10_000
JobIds = Annotated[list[Annotated[int, Field(ge=1, le=MAX_ID)]], Field(max_length=MAX_IDS)]
Text = Annotated[str | None, Query(max_length=1000)]
Name = Annotated[str | None, Query(max_length=255)]
Size = Annotated[int | None, Query(ge=1, le=2**31 - 1)]
Cursor = Annotated[str | None, Query(max_length=512, description="`next_cursor` of the previous page, as it came")]
Limit = Annotated[int, Query(ge=1, le=200)]
Order = Literal["relevance", "newest", "oldest"]
Mode = Literal["txt2img", "img2img", "inpaint"]
Status = Literal["running", "done", "cancelled", "failed"]
A_ZIP: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/zip": {}}, "description": "The zip, streamed: the PNGs as stored (A1111's "
          "parameters inside each) and manifest.json. `X-Atelier-Jobs` and `X-Atelier-Files` say how many jobs and "
          "images it holds (it has no Content-Length: it is made as it is sent)."}}


class JobFilters(BaseModel):
    """The filters of a history search, as query parameters (GET /api/history) or in a body (an export)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    since: str | None = Field(None, max_length=64, description="made at or after (ISO 8601 date or time; UTC unless "
                                                               "it says)")
    until: str | None = Field(None, max_length=64, description="made before")
    model: str | None = Field(None, max_length=255, description="the model that ran, or the checkpoint asked for")
    mode: Mode | None = None
    width: int | None = Field(None, ge=1, le=2**31 - 1)
    height: int | None = Field(None, ge=1, le=2**31 - 1)
    sampler: str | None = Field(None, max_length=255)
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="the seed of the job or of any of its images")
    lora: str | None = Field(None, max_length=255, description="a LoRA the prompt names (<lora:NAME:weight>)")
    favourite: bool | None = None
    status: Status | None = None
    collection_id: int | None = Field(None, ge=1, le=MAX_ID)


class ExportQuery(JobFilters):
    """A search whose every result is exported: its words and filters."""

    q: str = Field("", max_length=1000, description="the search box's words (see docs/history.md)")


class JobsExport(BaseModel):
    """Which jobs to export: exactly one of job_ids, collection_id, query or all."""

    model_config = ConfigDict(extra="forbid", strict=True)

    job_ids: JobIds | None = None
    collection_id: int | None = Field(None, ge=1, le=MAX_ID)
    query: ExportQuery | None = None
    all: bool = False


class JobSelection(BaseModel):
    """Job ids, at most 10,000."""

    model_config = ConfigDict(extra="forbid", strict=True)

    job_ids: JobIds


class BulkAnswer(BaseModel):
    """What was done, and the ids that are not yours (or no longer exist)."""

    deleted: list[int]
    missing: list[int]


class Favourite(BaseModel):
    """A job's favourite mark, as it is now."""

    job_id: int
    favourite: bool


@router.get("/history", summary="Your image jobs: newest first, or searched", responses=REFUSALS)
def history(request: Request, services: Served, who: Asking, limit: Limit = 20,
            before: Annotated[int | None, Query(ge=1, le=MAX_ID, description="old paging: `next_before`")] = None,
            q: Text = None, since: Annotated[str | None, Query(max_length=64)] = None,
            until: Annotated[str | None, Query(max_length=64)] = None, model: Name = None, mode: Mode | None = None,
            width: Size = None, height: Size = None, sampler: Name = None,
            seed: Annotated[int | None, Query(ge=0, le=2**32 - 1)] = None, lora: Name = None,
            favourite: bool | None = None, status: Status | None = None,
            collection_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None, order: Order | None = None,
            cursor: Cursor = None) -> dict[str, Any]:
    """Without search parameters, as before: newest first, `next_before` pages (an admin sees everyone's). With any
    of q, a filter, order or cursor: a search of your own jobs, ranked (up to 3,000 matches; else newest first, and
    `note` says so), matched words marked in `highlight`, `next_cursor` for the next page."""
    count_read(request)
    filters = {"since": since, "until": until, "model": model, "mode": mode, "width": width, "height": height,
               "sampler": sampler, "seed": seed, "lora": lora, "favourite": favourite, "status": status,
               "collection_id": collection_id}
    given = {name: value for name, value in filters.items() if value is not None}
    if not given and q is None and order is None and cursor is None:
        return services.history.list_jobs(who.scope, limit=limit, before=before)
    return services.search.images(who.name, q or "", limit=limit, order=order, cursor=cursor, **given)


@router.get("/history/facets", summary="The models, samplers, modes and sizes your jobs have", responses=REFUSALS)
def facets(request: Request, services: Served, who: Asking) -> dict[str, list[Any]]:
    """For the search filters' choices."""
    count_read(request)
    return services.search.facets(who.name)


declare_item_routes(router, ItemRoutes(
    "/history/{job_id}", "job_id", "job", setter=lambda s: s.history.set_favourite,
    deleter=lambda s: s.history.delete_jobs, favourite=Favourite, deleted=BulkAnswer,
    delete_summary="Delete one of your jobs, its images and their stored files",
    delete_doc="404 for a job that is not yours.", selection=JobSelection,
    bulk_summary="Delete many of your jobs at once, with their files"))


@router.post("/history/export", summary="A zip of your jobs' PNGs and a manifest.json, streamed",
             response_class=StreamingResponse, responses={**A_ZIP, **REFUSALS, **CROSS_SITE, **BODY},
             dependencies=[SameSite])
def export_jobs(request: Request, services: Served, who: Asking, body: JobsExport) -> StreamingResponse:
    """Name the jobs one way: `job_ids` (every one yours, or 422), `collection_id`, `query` (a search: every
    result) or `all`. Refusals come before the first byte; the zip is made as it is sent."""
    count_read(request)
    query = body.query.model_dump(exclude_none=True) if body.query is not None else None
    ids = services.exports.job_ids(who.name, job_ids=body.job_ids, collection_id=body.collection_id, query=query,
                                   everything=body.all)
    return stream_export(services.exports.images_zip(who.name, ids), files=services.exports.file_count(ids))


def stream_export(export: Any, files: int | None = None) -> StreamingResponse:
    """A streamed Export (services/export.py) as an attachment; its job count (and file count) in headers, for a
    progress indicator: the zip has no Content-Length."""
    headers = {"Content-Disposition": f'attachment; filename="{export.filename}"', "X-Atelier-Jobs": str(export.total),
               "Cache-Control": "private, no-store"}
    if files is not None:
        headers["X-Atelier-Files"] = str(files)
    # A sync iterator: Starlette runs each step in a worker thread (the generator reads the database and the store).
    return StreamingResponse(export.chunks, media_type="application/zip", headers=headers)
