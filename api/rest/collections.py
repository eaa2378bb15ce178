"""/api/collections: named sets of your image jobs: make, list, rename, delete; add and remove jobs; search within."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from api.rest.common import BODY, CROSS_SITE, NOT_YOURS, REFUSALS, Asking, Id, SameSite, Served, count_read, found
from api.rest.history import JobSelection, Mode, Order, Status

router = APIRouter()
Name = Annotated[str | None, Query(max_length=255)]


class NewName(BaseModel):
    """A collection's name: 1 to 100 characters once spaces are tidied, unique among yours."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(max_length=10_000)


class CollectionSummary(BaseModel):
    """A collection: its name, how many jobs it holds, and a cover image (GET /api/images/{cover_file_id})."""

    collection_id: int
    name: str
    created_at: str
    updated_at: str
    jobs: int
    cover_file_id: int | None


class Changed(BaseModel):
    """What an add or remove did: jobs added, jobs that were in it already, jobs taken out."""

    added: int = 0
    already: int = 0
    removed: int = 0


@router.get("/collections", summary="Your collections, by name", responses=REFUSALS)
def collections(request: Request, services: Served, who: Asking) -> list[CollectionSummary]:
    """Each with its number of jobs and a cover."""
    count_read(request)
    return [CollectionSummary(**c) for c in services.collections.list(who.name)]


@router.post("/collections", summary="Make a collection", status_code=201,
             responses={**REFUSALS, **CROSS_SITE, **BODY}, dependencies=[SameSite])
def create(request: Request, services: Served, who: Asking, body: NewName) -> CollectionSummary:
    """422 for an empty name, or one you already have."""
    count_read(request)
    return CollectionSummary(**services.collections.create(who.name, body.name))


@router.get("/collections/{collection_id}", summary="One of your collections",
            responses={**REFUSALS, **NOT_YOURS})
def collection(request: Request, services: Served, who: Asking, collection_id: Id) -> CollectionSummary:
    """404 for a collection that is not yours."""
    count_read(request)
    summary = services.collections.get(who.name, collection_id)
    found(summary, "collection", collection_id)
    return CollectionSummary(**summary)


@router.patch("/collections/{collection_id}", summary="Rename one of your collections",
              responses={**REFUSALS, **NOT_YOURS, **CROSS_SITE, **BODY}, dependencies=[SameSite])
def rename(request: Request, services: Served, who: Asking, collection_id: Id, body: NewName) -> CollectionSummary:
    """422 for an empty name or one you already have."""
    count_read(request)
    return CollectionSummary(**services.collections.rename(who.name, collection_id, body.name))


@router.delete("/collections/{collection_id}", summary="Delete one of your collections (its jobs stay)",
               status_code=204, responses={**REFUSALS, **NOT_YOURS, **CROSS_SITE}, dependencies=[SameSite])
def delete(request: Request, services: Served, who: Asking, collection_id: Id) -> None:
    """The jobs it held stay in your history."""
    count_read(request)
    found(services.collections.delete(who.name, collection_id), "collection", collection_id)


@router.get("/collections/{collection_id}/jobs", summary="The jobs of one of your collections, searchable",
            responses={**REFUSALS, **NOT_YOURS})
def jobs(request: Request, services: Served, who: Asking, collection_id: Id,
         q: Annotated[str | None, Query(max_length=1000)] = None,
         since: Annotated[str | None, Query(max_length=64)] = None,
         until: Annotated[str | None, Query(max_length=64)] = None, model: Name = None, mode: Mode | None = None,
         sampler: Name = None, lora: Name = None, favourite: bool | None = None, status: Status | None = None,
         order: Order | None = None, cursor: Annotated[str | None, Query(max_length=512)] = None,
         limit: Annotated[int, Query(ge=1, le=200)] = 20) -> dict[str, Any]:
    """As GET /api/history's search, within the collection."""
    count_read(request)
    filters = {"since": since, "until": until, "model": model, "mode": mode, "sampler": sampler, "lora": lora,
               "favourite": favourite, "status": status}
    return services.search.images(who.name, q or "", order=order, cursor=cursor, limit=limit,
                                  collection_id=collection_id, **{k: v for k, v in filters.items() if v is not None})


@router.post("/collections/{collection_id}/jobs", summary="Add some of your jobs to a collection",
             responses={**REFUSALS, **NOT_YOURS, **CROSS_SITE, **BODY}, dependencies=[SameSite])
def add(request: Request, services: Served, who: Asking, collection_id: Id, body: JobSelection) -> Changed:
    """All or nothing: 422 when any id is not one of your jobs. Jobs already in it stay once."""
    count_read(request)
    return Changed(**services.collections.add(who.name, collection_id, body.job_ids))


@router.post("/collections/{collection_id}/jobs/remove", summary="Take jobs out of a collection (they stay in "
             "your history)", responses={**REFUSALS, **NOT_YOURS, **CROSS_SITE, **BODY}, dependencies=[SameSite])
def remove(request: Request, services: Served, who: Asking, collection_id: Id, body: JobSelection) -> Changed:
    """Ids not in the collection are left alone."""
    count_read(request)
    return Changed(**services.collections.remove(who.name, collection_id, body.job_ids))
