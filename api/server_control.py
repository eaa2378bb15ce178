"""The admin panel's hold on the web server (services/admin.py's ServerControl): the jobs in Gradio's queue and those
the other APIs (/v1, /sdapi/v1) run, stopping any of them, and ending a user's login sessions. It reaches Gradio only
through api/gradio_internals.py."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from api import gradio_internals
from api.gateway import KIND_BY_CONCURRENCY
from services.running import RunningJobs

# Where a job the other APIs run came in (services/running.py's source), as its route in the queue's list.
API_ROUTES = {"openai": "/v1", "a1111": "/sdapi/v1"}


class GradioControl:
    """The live queue and login sessions of this replica's Gradio (`gradio_app`: its mounted App)."""

    def __init__(self, blocks: Any, gradio_app: Any, running: RunningJobs | None = None) -> None:
        self.blocks = blocks
        self.gradio_app = gradio_app
        self.running = running or RunningJobs()  # the jobs of every way in; the UIs' are in Gradio's queue too
        self.running.origin = gradio_internals.current_event_id  # each UI job knows its event, to stop it by

    def jobs(self) -> list[dict[str, Any]]:
        """Every event waiting or running, oldest first: id, user, route, kind, status and seconds since it joined;
        then the jobs the other APIs run (their id is the job's ref)."""
        events = [{"id": e["id"], "user": e["user"], "route": f"/{e['api_name']}" if e["api_name"] else "",
                   "kind": KIND_BY_CONCURRENCY.get(e["concurrency"], "read"), "status": e["status"],
                   "seconds": e["seconds"]}
                  for e in gradio_internals.queue_events(self.blocks)]
        now = time.time()  # RunningJob.started is wall-clock time
        return events + [{"id": j.ref, "user": j.user, "route": API_ROUTES.get(j.source, j.source), "kind": j.kind,
                          "status": "running", "seconds": round(max(0.0, now - j.started), 1)}
                         for j in self.running.of(None) if j.source != "web"]

    async def stop(self, job_id: str) -> bool:
        """Stop one event or API job, waiting or running, whoever's it is."""
        if self.running.stop(job_id, None):  # an API job's ref (it stops within a step, as Stop does)
            return True
        # A running UI event: its job stops within a step and the event ends on its own, with its last update
        # ("stopped at step n", the partial work kept): cancelling the event would end its stream as if it had
        # finished, and its user's page would say Done. A waiting event has no job yet: Gradio takes it out.
        if self.running.stop_origin(job_id):
            return True
        return await gradio_internals.cancel_event(self.gradio_app, self.blocks, job_id)

    async def end_sessions(self, user: str) -> int:
        """Log `user` out (on Redis, on every replica) and stop their events and API jobs here; how many were
        stopped."""
        await asyncio.to_thread(gradio_internals.drop_logins, self.gradio_app, user)
        stopped = 0
        for job in self.jobs():
            if job["user"] == user:
                stopped += await self.stop(job["id"])
        return stopped
