"""What the Admin tab's sections share (ui/admin_tab.py, ui/admin_views.py): the admin check and audit row around
every event, and small helpers."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from services.admin import AdminError
from services.container import Services
from ui.common import PRIVATE, error_toast, job_context, user_of

# Admin events run at once (no model), in a concurrency group of their own: the gateway logs them as `admin`.
ADMIN_EVENT: dict[str, Any] = {**PRIVATE, "concurrency_id": "admin", "concurrency_limit": None}
NOT_ADMIN = "Only admins may use the admin panel."

Handler = Callable[..., Awaitable[Any]]


def admin_only(services: Services, what: str) -> Callable[[Handler], Handler]:
    """Wrap an admin event's handler: refused unless its user is an admin. Its request log row says `what` it did, or
    the handler's own words when it returns them with its outputs (Said); a refusal's row is failed, with the reason."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)  # Gradio reads the handler's own signature (its inputs, where gr.Request goes)
        async def checked(*args: Any) -> Any:
            request = next((a for a in args if isinstance(a, gr.Request)), None)
            with job_context(request):
                viewer = await asyncio.to_thread(services.accounts.viewer, user_of(request))
                if not viewer.admin:
                    services.admin.audit(f"{what}: {NOT_ADMIN}", "failed")
                    raise error_toast(NOT_ADMIN)
                try:
                    result = await handler(*args)
                except AdminError as err:
                    services.admin.audit(f"{what}: {err}", "failed")
                    raise error_toast(str(err)) from None
                services.admin.audit(getattr(result, "said", None) or what)
                return result.value if isinstance(result, Said) else result

        return checked

    return wrap


@dataclass
class Said:
    """A handler's outputs and what it did, in words, for its request log row."""

    value: Any
    said: str


def name_of(name: str | None) -> str:
    """The user named in the panel; AdminError when none is."""
    if not (name or "").strip():
        raise AdminError("Select a user first (a row of the table) or type a name.")
    return str(name).strip()


def first_cell(evt: gr.SelectData) -> str:
    """The first cell of a table's selected row (a user's name, a job's id)."""
    row = getattr(evt, "row_value", None)
    return str(row[0]) if row else ""
