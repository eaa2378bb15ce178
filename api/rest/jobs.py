"""GET /api/jobs and POST /api/jobs/{ref}/stop: your image jobs and chat replies running now on this server, whichever
way they came in (the UIs, Gradio's API, the OpenAI or AUTOMATIC1111 APIs, MCP), and a Stop for each."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request
from pydantic import BaseModel

from api.rest.common import NOT_YOURS, REFUSALS, Asking, Problem, Served, count_read, same_origin

Ref = Annotated[str, Path(pattern=r"^[0-9a-f]{8,64}$", description="A running job's ref, from GET /api/jobs")]


class RunningJob(BaseModel):
    """A job or reply running now."""

    ref: str
    kind: str
    source: str
    description: str
    started_at: str
    status: str
    message: str
    step: int
    total: int
    progress: float
    job_id: int | None
    conversation_id: int | None


class JobList(BaseModel):
    """Your running jobs, oldest first."""

    jobs: list[RunningJob]


router = APIRouter()


@router.get("/jobs", summary="Your running jobs", response_model=JobList, responses=REFUSALS)
def jobs(request: Request, services: Served, who: Asking) -> dict[str, Any]:
    """Your image jobs and chat replies running now on this server, whichever way they came in (an admin sees
    everyone's)."""
    count_read(request)
    return {"jobs": [job.describe() for job in services.running.of(who.scope)]}


@router.post("/jobs/{ref}/stop", summary="Stop one of your running jobs",
             responses={**REFUSALS, **NOT_YOURS, 403: {"model": Problem, "description": "From another site"}})
def stop(request: Request, services: Served, who: Asking, ref: Ref) -> dict[str, Any]:
    """Stops the job within a step (or a token); it ends as cancelled in your history."""
    count_read(request)
    same_origin(request)
    if not services.running.stop(ref, who.scope):
        raise HTTPException(404, f"No running job {ref} of yours.")
    return {"stopped": ref}
