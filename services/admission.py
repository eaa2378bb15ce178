"""Admission: whether a user may queue one more job, checked before anything is queued, whichever way the request
came (the Gradio UI and its API today; the OpenAI, AUTOMATIC1111 and MCP adapters in api/ tomorrow).

The per-user quota counts the user's jobs in this replica's queue and, when replicas share Redis, on every replica
(the ledger in storage/shared_state.py). When that shared state cannot be reached, a request is refused with
UNAVAILABLE_MESSAGE (a 503), never let through unlimited: UNAVAILABLE are the errors that mean so, for the gateway
and the REST routes to catch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from storage.shared_state import UNAVAILABLE, UNAVAILABLE_MESSAGE, Claims, ClaimsFull, JobLedger

__all__ = ["REFUSAL_STATE_KEY", "TICKET_STATE_KEY", "UNAVAILABLE", "UNAVAILABLE_MESSAGE", "Claims", "ClaimsFull",
           "PlaceTeller", "QueueQuota"]

# Where the quota's ticket for a request is left (Starlette's request.state, shared with Gradio's Event).
TICKET_STATE_KEY = "atelier_job_ticket"
# Where a refusal by a limit names that limit (metrics.LIMITS: "quota" here), for the request's log row.
REFUSAL_STATE_KEY = "atelier_refused_by"

# (jobs ahead, jobs waiting, estimated seconds or None): sent to the client of the handler that calls it.
PlaceTeller = Callable[[int, int, "float | None"], None]


class QueueQuota:
    """At most `limit` queued plus running jobs per user, checked in validators before anything is queued.

    `jobs(blocks)` reads Gradio's queue (each user's job ids); the server hands in its adapter of Gradio's private
    attributes, which it checked at start-up, so the quota cannot silently turn off after a Gradio upgrade. The
    ledger adds the user's jobs on other replicas when they share Redis (storage/shared_state.py).
    """

    def __init__(self, limit: int | Callable[[str], int], jobs: Callable[[Any], dict[str, set[str]]],
                 enforced: bool = True, ledger: JobLedger | None = None, tell_place: PlaceTeller | None = None) -> None:
        # One number for everyone, or each user's own (an admin's override, services/user_limits.py).
        self.limit_of: Callable[[str], int] = limit if callable(limit) else (lambda user: limit)
        self.jobs = jobs
        # Shows a running handler's job its place in a line of Atelier's own (the batcher's), as Gradio shows a
        # queued event's: the server hands in its adapter of Gradio's private queue; None (tests): not shown.
        self.tell_place = tell_place or (lambda ahead, waiting, eta_s: None)
        self.enforced = enforced  # off for the one user of a loopback server (ATELIER_RATE_LIMITS)
        self.ledger = ledger or JobLedger()
        self.blocks: Any | None = None

    def all_jobs(self) -> dict[str, set[str]]:
        """Every user's events waiting in Gradio's queue or running now, by id."""
        if self.blocks is None:
            raise RuntimeError("QueueQuota.blocks is not set: build_ui sets it once the Blocks exist.")
        return self.jobs(self.blocks)

    def problem(self, request: Any | None) -> str:
        """A message when this request would exceed its user's quota, else '' (and the job is counted)."""
        if not self.enforced:
            return ""
        user = getattr(request, "username", None) or ""  # without accounts everyone is the one user ''
        limit = self.limit_of(user)
        admitted, count, ticket = self.ledger.admit(user, self.all_jobs().get(user, set()), limit)
        http = getattr(request, "request", None)
        if not admitted:
            if http is not None:
                http.scope.setdefault("state", {})[REFUSAL_STATE_KEY] = "quota"
            return (f"You already have {count} jobs queued or running (the limit is {limit}). "
                    "Wait for one to finish, or stop one.")
        if ticket and http is not None:  # the job's event carries it: the ledger then counts the ticket once
            http.scope.setdefault("state", {})[TICKET_STATE_KEY] = ticket
        return ""
