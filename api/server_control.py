"""The admin panel's hold on the web server (services/admin.py's ServerControl): the jobs in Gradio's queue, stopping
any of them, and ending a user's login sessions. It reaches Gradio only through api/gradio_internals.py."""

from __future__ import annotations

import asyncio
from typing import Any

from api import gradio_internals
from api.gateway import KIND_BY_CONCURRENCY


class GradioControl:
    """The live queue and login sessions of this replica's Gradio (`gradio_app`: its mounted App)."""

    def __init__(self, blocks: Any, gradio_app: Any) -> None:
        self.blocks = blocks
        self.gradio_app = gradio_app

    def jobs(self) -> list[dict[str, Any]]:
        """Every event waiting or running, oldest first: id, user, route, kind, status and seconds since it joined."""
        return [{"id": e["id"], "user": e["user"], "route": f"/{e['api_name']}" if e["api_name"] else "",
                 "kind": KIND_BY_CONCURRENCY.get(e["concurrency"], "read"), "status": e["status"],
                 "seconds": e["seconds"]}
                for e in gradio_internals.queue_events(self.blocks)]

    async def stop(self, job_id: str) -> bool:
        """Stop one event, waiting or running, whoever's it is."""
        return await gradio_internals.cancel_event(self.gradio_app, self.blocks, job_id)

    async def end_sessions(self, user: str) -> int:
        """Log `user` out (on Redis, on every replica) and stop their events here; how many were stopped."""
        await asyncio.to_thread(gradio_internals.drop_logins, self.gradio_app, user)
        stopped = 0
        for job in self.jobs():
            if job["user"] == user:
                stopped += await self.stop(job["id"])
        return stopped
