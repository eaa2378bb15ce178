"""Small helpers shared by the tabs: who is asking, and the per-user queue quota."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gradio as gr

if TYPE_CHECKING:
    from services.container import Services

# Internal UI events: not part of the public API and not callable by client libraries.
PRIVATE: dict[str, Any] = {"api_visibility": "private"}


def user_of(request: gr.Request | None) -> str:
    """The logged-in user's name, or '' in single-user mode: the owner of what the request creates."""
    return (getattr(request, "username", None) or "") if request is not None else ""


def scope_of(services: Services, request: gr.Request | None) -> str | None:
    """Whose work the request may read: its user's, or everyone's (None) for an admin."""
    return services.accounts.viewer(user_of(request)).scope


class QueueQuota:
    """At most `limit` queued plus running jobs per user, checked in validators before anything is queued.

    `count_jobs(blocks, user)` reads Gradio's queue; app.py hands in its adapter of Gradio's private
    attributes, which it checked at start-up, so the quota cannot silently turn off after a Gradio upgrade.
    """

    def __init__(self, limit: int, count_jobs: Callable[[gr.Blocks, str], int]) -> None:
        self.limit = limit
        self.count_jobs = count_jobs
        self.blocks: gr.Blocks | None = None

    def jobs_of(self, user: str) -> int:
        """The user's events waiting in Gradio's queue or running now."""
        if self.blocks is None:
            raise RuntimeError("QueueQuota.blocks is not set: build_ui sets it once the Blocks exist.")
        return self.count_jobs(self.blocks, user)

    def problem(self, request: gr.Request | None) -> str:
        """A message when this request would exceed its user's quota, else ''."""
        user = getattr(request, "username", None)
        if not user:
            return ""  # single-user mode: nobody to share the GPU with
        count = self.jobs_of(user)
        if count >= self.limit:
            return (f"You already have {count} jobs queued or running (the limit is {self.limit}). "
                    "Wait for one to finish, or stop one.")
        return ""
