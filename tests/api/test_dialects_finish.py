"""api/dialects/common.finish: a non-streaming API request waits for its job's end, stops the job if the client goes,
and never swallows a cancel of the request itself."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from api.dialects.common import finish
from services.jobs import JobHandle
from tests.services.test_jobs import Snap


class StillConnected:
    """A request whose client never goes away."""

    def __init__(self) -> None:
        self.never = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        await self.never.wait()
        return {"type": "http.disconnect"}


@pytest.mark.parametrize("turns", range(8))
def test_a_cancel_of_the_request_as_its_job_ends_is_not_swallowed(turns: int) -> None:
    # finish() cancels its disconnect watcher once the job ends and waits for it; a cancel of the request landing in
    # that wait was suppressed with the watcher's own, and the request went on as if never cancelled.
    handle: JobHandle[Snap] = JobHandle(Snap(version=0, status="running"))

    async def cancel_as_it_ends() -> tuple[bool, bool]:
        task = asyncio.ensure_future(finish(handle, StillConnected()))  # type: ignore[arg-type]
        for _ in range(3):
            await asyncio.sleep(0)  # waiting for the job's end
        handle.update(status="done")
        for _ in range(turns):
            await asyncio.sleep(0)
        ended_first = task.done()
        task.cancel()
        for _ in range(20):
            await asyncio.sleep(0)
        return ended_first, task.cancelled()

    ended_first, cancelled = asyncio.run(cancel_as_it_ends())
    assert ended_first or cancelled
