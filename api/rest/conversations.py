"""/api/conversations: your conversations, searched by the words of any message (the reasoning too, or not), by title
and date; one with its messages; renaming, favourites, deleting many at once, and an export of one."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from api.rest.common import (
    BODY,
    CROSS_SITE,
    MAX_ID,
    NOT_YOURS,
    REFUSALS,
    Asking,
    Id,
    ItemRoutes,
    SameSite,
    Served,
    count_read,
    declare_item_routes,
    found,
)
from api.rest.history import BulkAnswer

router = APIRouter()

Order = Literal["relevance", "newest", "oldest"]
Format = Literal["markdown", "json", "openai"]
ConversationIds = Annotated[list[Annotated[int, Field(ge=1, le=MAX_ID)]], Field(max_length=10_000)]
A_FILE: dict[int | str, dict[str, Any]] = {200: {"content": {"text/markdown": {}, "application/json": {}},
                                                 "description": "The conversation as a file to keep"}}


class Rename(BaseModel):
    """A conversation's new title."""

    model_config = ConfigDict(extra="forbid", strict=True)

    title: str = Field(max_length=10_000, description="1 to 200 characters once spaces are tidied")


class ConversationSelection(BaseModel):
    """Conversation ids, at most 10,000."""

    model_config = ConfigDict(extra="forbid", strict=True)

    conversation_ids: ConversationIds


class Favourite(BaseModel):
    """A conversation's favourite mark, as it is now."""

    conversation_id: int
    favourite: bool


@router.get("/conversations", summary="Your conversations: latest first, or searched", responses=REFUSALS)
def conversations(request: Request, services: Served, who: Asking,
                  q: Annotated[str | None, Query(max_length=1000)] = None,
                  reasoning: Annotated[bool, Query(description="search the reasoning too")] = True,
                  since: Annotated[str | None, Query(max_length=64)] = None,
                  until: Annotated[str | None, Query(max_length=64)] = None, favourite: bool | None = None,
                  order: Order | None = None,
                  cursor: Annotated[str | None, Query(max_length=512)] = None,
                  limit: Annotated[int, Query(ge=1, le=200)] = 20) -> dict[str, Any]:
    """With words: conversations whose title or any message matches, ranked (up to 3,000 matching messages; else
    latest first, and `note` says so), each with its marked title and best message's snippet; `next_cursor` pages."""
    count_read(request)
    return services.search.conversations(who.name, q or "", reasoning=reasoning, since=since, until=until,
                                         favourite=favourite, order=order, cursor=cursor, limit=limit)


@router.get("/conversations/{conversation_id}", summary="One conversation with its messages",
            responses={**REFUSALS, **NOT_YOURS})
def conversation(request: Request, services: Served, who: Asking, conversation_id: Id) -> dict[str, Any]:
    """Reasoning apart from each answer; 404 for an id that is not yours."""
    count_read(request)
    conversation = services.chat.get_conversation(conversation_id, who.scope)
    found(conversation, "conversation", conversation_id)
    return conversation  # type: ignore[return-value]


@router.patch("/conversations/{conversation_id}", summary="Rename one of your conversations",
              responses={**REFUSALS, **NOT_YOURS, **CROSS_SITE, **BODY}, dependencies=[SameSite])
def rename(request: Request, services: Served, who: Asking, conversation_id: Id, body: Rename) -> dict[str, Any]:
    """The renamed conversation's summary; 422 for an empty or overlong title."""
    count_read(request)
    return services.chat.rename_conversation(conversation_id, who.name, body.title)


declare_item_routes(router, ItemRoutes(
    "/conversations/{conversation_id}", "conversation_id", "conversation", setter=lambda s: s.chat.set_favourite,
    deleter=lambda s: s.chat.delete_conversations, favourite=Favourite, deleted=BulkAnswer,
    delete_summary="Delete one of your conversations",
    delete_doc="With its messages; 404 for a conversation that is not yours.", selection=ConversationSelection,
    bulk_summary="Delete many of your conversations at once"))


@router.get("/conversations/{conversation_id}/export", summary="One of your conversations as a file",
            response_class=Response, responses={**A_FILE, **REFUSALS, **NOT_YOURS})
def export(request: Request, services: Served, who: Asking, conversation_id: Id,
           format: Annotated[Format, Query(description="markdown (the reasoning folded in <details>), json "
                                                       "(Atelier's own, lossless) or openai (its messages format)")]
           = "markdown") -> Response:
    """As an attachment; 404 for a conversation that is not yours."""
    count_read(request)
    name, media, data = services.exports.conversation(who.name, conversation_id, format)
    return Response(data, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"',
                                                     "Cache-Control": "private, no-store"})
