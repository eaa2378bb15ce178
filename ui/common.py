"""Small helpers shared by the tabs: who is asking, and the per-user queue quota."""

from __future__ import annotations

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
    """At most `limit` queued plus running jobs per user, checked in validators before anything is queued."""

    def __init__(self, limit: int, enforced: bool = True) -> None:
        self.limit = limit
        self.enforced = enforced  # off for the one user of a loopback server (ATELIER_RATE_LIMITS)
        self.blocks: gr.Blocks | None = None

    def jobs_of(self, user: str) -> int:
        """The user's events waiting in Gradio's queue or running now."""
        queue = getattr(self.blocks, "_queue", None)
        if queue is None:
            return 0
        waiting = [e for q in queue.event_queue_per_concurrency_id.values() for e in q.queue]
        running = [e for job in queue.active_jobs if job for e in job]
        return sum(1 for e in waiting + running if (e.username or "") == user)

    def problem(self, request: gr.Request | None) -> str:
        """A message when this request would exceed its user's quota, else ''."""
        if not self.enforced:
            return ""
        user = getattr(request, "username", None) or ""  # without accounts everyone is the one user ''
        count = self.jobs_of(user)
        if count >= self.limit:
            return (f"You already have {count} jobs queued or running (the limit is {self.limit}). "
                    "Wait for one to finish, or stop one.")
        return ""
