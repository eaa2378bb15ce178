"""GET /api/conversations/{id}: one of your conversations with its messages."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request

from api.rest.common import NOT_YOURS, REFUSALS, Asking, Id, Served, count_read

router = APIRouter()


@router.get("/conversations/{conversation_id}", summary="One conversation with its messages",
            responses={**REFUSALS, **NOT_YOURS})
def conversation(request: Request, services: Served, who: Asking, conversation_id: Id) -> dict[str, Any]:
    """Reasoning apart from each answer; 404 for an id that is not yours."""
    count_read(request)
    found = services.chat.get_conversation(conversation_id, who.scope)
    if found is None:
        raise HTTPException(404, f"conversation {conversation_id} does not exist.")
    return found
