"""The image jobs and chat replies running in this process, by user, whichever way they came in.

The image and chat services add every job they start here, so that its owner can see it and stop it from anywhere:
the UI's account panel and REST (`/api/jobs`), AUTOMATIC1111's `/sdapi/v1/progress` and `interrupt`. Nobody else
can: every lookup names the user.

It is also the queue quota's count of the jobs that Gradio's queue does not hold. A job that comes through Gradio
(the UIs, `gradio_client`, MCP) is counted there; one that comes through the OpenAI or AUTOMATIC1111 APIs never
enters Gradio's queue, so it holds a *reservation* here instead, taken under one lock with the count (Gradio's
jobs of the user, plus the reservations, plus on Redis the user's jobs on other replicas). The Gradio path's quota
counts the reservations too (`with_reserved`), so the limit holds across the UIs and the APIs together.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from services.jobs import FINAL_STATES, JobHandle
from storage.shared_state import JobLedger

DESCRIPTION_CHARS = 80
# A reservation whose job never started (the request failed between the two) stops counting after this long.
RESERVATION_TTL_S = 60.0


class QuotaExceeded(Exception):
    """One more job would take the user over the queue quota; the message says so and what to do."""

    def __init__(self, count: int, limit: int) -> None:
        self.count, self.limit = count, limit
        super().__init__(f"You already have {count} jobs queued or running (the limit is {limit}). "
                         "Wait for one to finish, or stop one.")


@dataclass(frozen=True)
class Quota:
    """The queue quota as the APIs apply it: at most `limit` jobs per user, counting `elsewhere()` (each user's
    jobs in Gradio's queue) and the ledger's jobs on other replicas; nothing is counted when not `enforced`."""

    limit: int
    enforced: bool
    elsewhere: Callable[[], dict[str, set[str]]] = dict
    ledger: JobLedger = field(default_factory=JobLedger)
    # Each user's own quota (an admin's override, services/user_limits.py); None: `limit` for everyone.
    limit_of: Callable[[str], int] | None = None

    def limit_for(self, user: str) -> int:
        """The quota that applies to `user`."""
        return self.limit_of(user) if self.limit_of is not None and user else self.limit


@dataclass
class RunningJob:
    """One job or reply while it runs: who owns it, what it is, and its handle (None while only reserved)."""

    ref: str
    user: str
    kind: str  # image | chat
    source: str  # web (the UIs and Gradio's API), openai, a1111
    started: float
    description: str = ""
    handle: JobHandle[Any] | None = None
    reserved: bool = False  # holds a quota place of its own (it did not come through Gradio's queue)
    origin: str = ""  # the id of the web server's event that runs it (RunningJobs.origin), "" for none

    @property
    def finished(self) -> bool:
        """True once its handle reached a final state."""
        return self.handle is not None and self.handle.snapshot().status in FINAL_STATES

    def describe(self) -> dict[str, Any]:
        """JSON-ready: ref, kind, source, status, message, progress, and the history ids it has so far."""
        snap = self.handle.snapshot() if self.handle is not None else None
        step, total = getattr(snap, "step", 0), getattr(snap, "total", 0)
        return {
            "ref": self.ref, "kind": self.kind, "source": self.source, "description": self.description,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "status": snap.status if snap else "waiting", "message": snap.message if snap else "Starting…",
            "step": step, "total": total, "progress": round(step / total, 4) if total else 0.0,
            "job_id": getattr(snap, "job_id", None), "conversation_id": getattr(snap, "conversation_id", None),
        }


class RunningJobs:
    """The registry: add, reserve, look up and stop jobs by user."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._lock = threading.RLock()
        self._jobs: dict[str, RunningJob] = {}
        # The id of the web server's event running the caller of add(), "" outside one: set by the web server (its
        # admin queue lists events, and stops a running one through its job, api/server_control.py).
        self.origin: Callable[[], str] = str

    def reserve(self, user: str, kind: str, source: str, quota: Quota | None) -> str:
        """A quota place for one API job of `user` (QuotaExceeded when over the quota): its ref, to pass to the
        service's start, or to release() if the job does not start."""
        with self._lock:
            self._prune()
            ticket = None
            if quota is not None and quota.enforced:
                mine = quota.elsewhere().get(user, set()) | self._reserved_refs(user)
                limit = quota.limit_for(user)
                admitted, count, ticket = quota.ledger.admit(user, mine, limit)
                if not admitted:
                    raise QuotaExceeded(count, limit)
            # The ledger's ticket is this job's id on Redis: its sync then finds the job among this replica's.
            ref = ticket or secrets.token_hex(12)
            self._jobs[ref] = RunningJob(ref, user, kind, source, self.clock(), reserved=True)
            return ref

    def release(self, ref: str) -> None:
        """Give a reservation back when its job did not start."""
        with self._lock:
            job = self._jobs.get(ref)
            if job is not None and job.handle is None:
                del self._jobs[ref]

    def add(self, handle: JobHandle[Any], user: str, kind: str, source: str = "web", description: str = "",
            ref: str | None = None) -> RunningJob:
        """Register a started job: on its reservation when `ref` names one, else as a job Gradio's queue counts."""
        with self._lock:
            self._prune()
            job = self._jobs.get(ref) if ref else None
            if job is None or job.user != user or job.handle is not None:
                job = RunningJob(secrets.token_hex(12), user, kind, source, self.clock())
                self._jobs[job.ref] = job
            job.handle, job.description = handle, _excerpt(description)
            job.origin = self.origin()
            return job

    def of(self, user: str | None, kind: str | None = None) -> list[RunningJob]:
        """The running jobs of `user` (None: everyone's, for an admin), oldest first."""
        with self._lock:
            self._prune()
            return [j for j in self._jobs.values() if j.handle is not None and (user is None or j.user == user)
                    and (kind is None or j.kind == kind)]

    def get(self, ref: str, user: str | None) -> RunningJob | None:
        """One running job of `user` (None: anyone's) by ref; None when it is not theirs, or over."""
        with self._lock:
            self._prune()
            job = self._jobs.get(ref)
            return job if job is not None and job.handle is not None and user in (None, job.user) else None

    def stop(self, ref: str, user: str | None) -> bool:
        """Stop one job of `user` (None: anyone's, for an admin); False when there is no such running job."""
        job = self.get(ref, user)
        if job is None or job.handle is None:
            return False
        job.handle.stop()
        return True

    def stop_origin(self, origin: str) -> bool:
        """Stop the running job of the web server's event `origin` (anyone's, for an admin); False for none."""
        with self._lock:
            self._prune()
            jobs = [j for j in self._jobs.values() if origin and j.origin == origin and j.handle is not None]
        for job in jobs:
            job.handle.stop()  # type: ignore[union-attr]  # (listed with a handle)
        return bool(jobs)

    def stop_all(self, user: str, kind: str | None = None) -> int:
        """Stop every running job of `user` (of one kind); how many."""
        jobs = self.of(user, kind)
        for job in jobs:
            if job.handle is not None:  # of() lists started jobs only
                job.handle.stop()
        return len(jobs)

    def reserved(self) -> dict[str, set[str]]:
        """The refs of the jobs holding reservations, by user (what the quota counts besides Gradio's queue)."""
        with self._lock:
            self._prune()
            out: dict[str, set[str]] = {}
            for job in self._jobs.values():
                if job.reserved:
                    out.setdefault(job.user, set()).add(job.ref)
            return out

    def with_reserved(self, jobs: dict[str, set[str]]) -> dict[str, set[str]]:
        """`jobs` (each user's jobs in Gradio's queue) with the reservations added."""
        merged = {user: set(ids) for user, ids in jobs.items()}
        for user, refs in self.reserved().items():
            merged.setdefault(user, set()).update(refs)
        return merged

    def _reserved_refs(self, user: str) -> set[str]:
        return {j.ref for j in self._jobs.values() if j.reserved and j.user == user}

    def _prune(self) -> None:
        """Drop finished jobs and reservations that never started (lock held)."""
        now = self.clock()
        for ref in [r for r, j in self._jobs.items()
                    if j.finished or (j.handle is None and now - j.started > RESERVATION_TTL_S)]:
            del self._jobs[ref]


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= DESCRIPTION_CHARS else flat[:DESCRIPTION_CHARS - 1] + "…"
