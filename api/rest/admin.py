"""The admin REST routes under /api/admin (issue 26): users, their API keys, usage, per-user limits, the live queue,
the models and the request log. Admins only: anyone else gets 403 from every route before anything is read or
changed. Every request here leaves a request log row of kind `admin` (api/request_rows.py); one that changes something
says what it did in the row's reason.

A browser sends the login cookie on its own, so a request that changes something must come from this server's own
pages: a request whose Origin is another site's is refused (403).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from api.request_rows import AUDIT_STATE_KEY
from api.rest.common import BODY, MAX_ID, REFUSALS, Problem, Served, count_read, viewer
from services.accounts import MIN_PASSWORD, Viewer
from services.admin import MODEL_ACTIONS, AdminError
from services.request_log import MAX_PAGE
from services.usage import MAX_SPAN_DAYS
from services.user_limits import MAX_QUEUE_QUOTA

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
RATE_HELP = "a rate such as 10/minute or 100/hour; null returns it to the server's setting"
ADMIN_REFUSALS: dict[int | str, dict[str, Any]] = {
    **REFUSALS,
    403: {"model": Problem, "description": "Not an admin, or a change sent from another site"},
}
NO_SUCH: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "No such user, key or job"}}
NOT_NOW: dict[int | str, dict[str, Any]] = {409: {"model": Problem, "description": "Not possible now (see detail)"}}
UserName = Annotated[str, Path(pattern=NAME, max_length=64, description="an account's name")]


def admin_viewer(request: Request, who: Annotated[Viewer, Depends(viewer)]) -> Viewer:
    """The admin asking; 401 for nobody, 403 for anyone else."""
    if not who.admin:
        raise HTTPException(403, "Only admins may use the admin routes.")
    return who


def same_site(request: Request) -> None:
    """403 for a change whose Origin (a browser sets it) is not this server: another site's page cannot act with an
    admin's cookie."""
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.headers.get("host", ""):
        raise HTTPException(403, "Admin changes are accepted from this server's own pages only (the Origin differs).")


Admin = Annotated[Viewer, Depends(admin_viewer)]
router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(admin_viewer)], responses=ADMIN_REFUSALS)
changes = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(admin_viewer), Depends(same_site)],
                    responses=ADMIN_REFUSALS)


def admin_refused(request: Request, exc: Exception) -> JSONResponse:
    """An AdminError as its status and message; a 422 in FastAPI's own shape (a list of {loc, msg, type}), which the
    routes' schema promises for that status."""
    assert isinstance(exc, AdminError)
    if exc.status != 422:
        return JSONResponse({"detail": str(exc), "error": str(exc)}, status_code=exc.status)
    where = "query" if request.method in ("GET", "HEAD") else "body"
    detail = [{"loc": [where], "msg": str(exc), "type": "value_error"}]
    return JSONResponse({"detail": detail, "error": str(exc)}, status_code=422)


def audit(request: Request, what: str) -> None:
    """Say what an admin request did, for its request log row."""
    setattr(request.state, AUDIT_STATE_KEY, what)


class Strict(BaseModel):
    """A body that names an unknown field is refused (422) rather than half applied."""

    model_config = ConfigDict(extra="forbid")


class NewUser(Strict):
    """An account to create."""

    name: str = Field(pattern=NAME, max_length=64, description="1-64 letters, digits, '.', '_' or '-'")
    password: str = Field(min_length=MIN_PASSWORD, max_length=1024, description=f"at least {MIN_PASSWORD} characters")
    admin: bool = Field(default=False, description="may use the admin panel and sees everyone's work")


class UserChange(Strict):
    """What to change of an account (fields left out stay)."""

    disabled: bool | None = Field(default=None, description="true: no login, open sessions end; false: enable")
    admin: bool | None = Field(default=None, description="grant (true) or take back (false) the admin role")
    password: str | None = Field(default=None, min_length=MIN_PASSWORD, max_length=1024,
                                 description="a new password")


class LimitChange(Strict):
    """A user's limits to override; a field set to null returns to the server's setting, one left out stays."""

    image_jobs: str | None = Field(default=None, max_length=64, description=RATE_HELP)
    chat_messages: str | None = Field(default=None, max_length=64, description=RATE_HELP)
    uploads: str | None = Field(default=None, max_length=64, description=RATE_HELP)
    reads: str | None = Field(default=None, max_length=64, description=RATE_HELP)
    queue_quota: int | None = Field(default=None, ge=1, le=MAX_QUEUE_QUOTA,
                                    description="jobs queued or running at once; null: the server's setting")


class ModelAction(Strict):
    """What to do with a model now."""

    action: Literal["load", "offload", "unload"] = Field(description=", ".join(MODEL_ACTIONS))


def iso_only(value: object) -> object:
    """A period's end as ISO 8601 text only: pydantic would also read a bare number as seconds since 1970, which the
    schema (a date-time) does not offer and which is more likely a mistake than a wish."""
    if isinstance(value, str) and not ISO_DATE.match(value):
        raise ValueError("expected an ISO 8601 date or date-time, such as 2026-12-01 or 2026-12-01T08:00:00Z")
    return value


ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
Since = Annotated[dt.datetime | None, BeforeValidator(iso_only),
                  Query(description="start of the period (ISO 8601; default: `days` before until)")]
Until = Annotated[dt.datetime | None, BeforeValidator(iso_only),
                  Query(description="end of the period (ISO 8601; default: now)")]
Days = Annotated[float | None, Query(gt=0, le=MAX_SPAN_DAYS, description="the period's length (default 30)")]


@router.get("/users", summary="Every account")
def list_users(request: Request, services: Served) -> dict[str, Any]:
    """Name, admin, disabled, created, whether its limits are overridden, and its API key count (null: no keys in
    this build)."""
    count_read(request, "admin")
    return {"users": services.admin.users()}


@changes.post("/users", status_code=201, summary="Create an account", responses={**BODY, **NOT_NOW})
def create_user(request: Request, services: Served, new: NewUser) -> dict[str, Any]:
    """409 when the name is taken."""
    count_read(request, "admin")
    created = services.admin.create_user(new.name, new.password, new.admin)
    audit(request, f"created {new.name}{' (admin)' if new.admin else ''}")
    return created


@router.get("/users/{name}", summary="One account", responses=NO_SUCH)
def get_user(request: Request, services: Served, name: UserName) -> dict[str, Any]:
    """As listed by GET /api/admin/users."""
    count_read(request, "admin")
    return services.admin.user(name)


@changes.patch("/users/{name}", summary="Disable, enable, grant or take back admin, reset the password",
               responses={**BODY, **NO_SUCH, **NOT_NOW})
async def change_user(request: Request, services: Served, admin: Admin, name: UserName,
                      change: UserChange) -> dict[str, Any]:
    """Disabling ends the user's sessions and stops their jobs; you cannot disable or demote yourself (409)."""
    count_read(request, "admin")
    done = await services.admin.update_user(name, admin.name, disabled=change.disabled, admin=change.admin,
                                            password=change.password)
    audit(request, "; ".join(done))
    return {"user": services.admin.user(name), "done": done}


@changes.delete("/users/{name}", summary="Delete an account with its data", responses={**NO_SUCH, **NOT_NOW})
async def delete_user(request: Request, services: Served, admin: Admin, name: UserName) -> dict[str, Any]:
    """Its sessions end, its jobs stop; its image jobs and files, conversations, limits and keys are deleted. You
    cannot delete yourself (409)."""
    count_read(request, "admin")
    removed = await services.admin.delete_user(name, admin.name)
    audit(request, f"deleted {name}: {removed['image_jobs']} image job(s), {removed['conversations']} "
                   f"conversation(s), {removed['keys']} key(s); stopped {removed['stopped_jobs']} job(s)")
    return removed


@router.get("/users/{name}/keys", summary="A user's API keys", responses=NO_SUCH)
def user_keys(request: Request, services: Served, name: UserName) -> dict[str, Any]:
    """Name, first characters, created and last used: never the key itself."""
    count_read(request, "admin")
    return {"keys": services.admin.user_keys(name)}


@changes.delete("/users/{name}/keys/{key}", status_code=204, summary="Revoke a user's API key", responses=NO_SUCH)
def revoke_key(request: Request, services: Served, name: UserName,
               key: Annotated[str, Path(min_length=1, max_length=64, description="the key's name")]) -> Response:
    """It stops working at once, on every replica."""
    count_read(request, "admin")
    services.admin.revoke_key(name, key)
    audit(request, f"revoked the API key {key!r} of {name}")
    return Response(status_code=204)


@router.get("/usage", summary="Usage per user over a period")
def usage(request: Request, services: Served, since: Since = None, until: Until = None, days: Days = None,
          user: Annotated[str | None, Query(pattern=NAME, max_length=64, description="one user only")] = None,
          ) -> dict[str, Any]:
    """Jobs (done, failed, cancelled), image jobs, chat replies, images, tokens and GPU seconds per user, most GPU
    seconds first, and the total; from the request log, so as far back as its retention."""
    count_read(request, "admin")
    return services.admin.usage(since, until, days, user)


@router.get("/limits", summary="The default limits and every user's own")
def all_limits(request: Request, services: Served) -> dict[str, Any]:
    """Users listed have at least one override; `overridden` names the fields."""
    count_read(request, "admin")
    return services.admin.all_limits()


@router.get("/limits/{name}", summary="A user's effective limits", responses=NO_SUCH)
def user_limits(request: Request, services: Served, name: UserName) -> dict[str, Any]:
    """The settings' limits with the user's overrides applied."""
    count_read(request, "admin")
    return services.admin.user_limits(name)


@changes.patch("/limits/{name}", summary="Override some of a user's limits", responses={**BODY, **NO_SUCH})
def set_limits(request: Request, services: Served, admin: Admin, name: UserName,
               change: Annotated[LimitChange, Body()]) -> dict[str, Any]:
    """Applied on every replica within a second; a new rate starts a fresh window."""
    count_read(request, "admin")
    given = {field: getattr(change, field) for field in change.model_fields_set}
    limits = services.admin.set_limits(name, admin.name, given)
    audit(request, f"set the limits of {name}: " + ", ".join(f"{k}={v if v is not None else 'default'}"
                                                              for k, v in sorted(given.items())))
    return limits


@changes.delete("/limits/{name}", summary="Return a user to the default limits", responses=NO_SUCH)
def clear_limits(request: Request, services: Served, name: UserName) -> dict[str, Any]:
    """Every override of the user goes."""
    count_read(request, "admin")
    limits = services.admin.clear_limits(name)
    audit(request, f"returned {name} to the default limits")
    return limits


@router.get("/queue", summary="The jobs waiting and running on this replica")
def queue(request: Request, services: Served) -> dict[str, Any]:
    """Oldest first: id, user, route, kind, waiting or running, seconds since it joined the queue."""
    count_read(request, "admin")
    return {"replica": services.settings.resolved_replica_name, "jobs": services.admin.queue()}


@changes.delete("/queue/{job_id}", status_code=204, summary="Stop any job on this replica", responses=NO_SUCH)
async def stop_job(request: Request, services: Served,
                   job_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="an id from the queue")],
                   ) -> Response:
    """Waiting, it leaves the queue; running, it stops within a step (its partial work is kept as stopped)."""
    count_read(request, "admin")
    owner = next((job["user"] for job in services.admin.queue() if job["id"] == job_id), "")
    await services.admin.stop_job(job_id)
    audit(request, f"stopped job {job_id} of {owner or 'anonymous'}")
    return Response(status_code=204)


@router.get("/models", summary="The models of this replica")
def models(request: Request, services: Served) -> dict[str, Any]:
    """Each model slot's state (not loaded, loading, ready, offloaded, failed), model and backend."""
    count_read(request, "admin")
    return {"replica": services.settings.resolved_replica_name, "models": services.admin.models()}


@changes.post("/models/{kind}", summary="Load, offload or unload a model now",
              responses={**BODY, **NO_SUCH, **NOT_NOW})
def model_action(request: Request, services: Served, kind: Annotated[Literal["image", "text"], Path()],
                 body: ModelAction) -> dict[str, Any]:
    """Load starts in the background (watch GET /api/admin/models); offload and unload need the model idle (409)."""
    count_read(request, "admin")
    state = services.admin.model_action(kind, body.action)
    audit(request, f"asked the {kind} model to {body.action}")
    return state


@router.get("/requests", summary="The request log, filtered")
def requests(request: Request, services: Served, since: Since = None, until: Until = None,
             user: Annotated[str | None, Query(max_length=255, description="who (for a login: the name tried)")] = None,
             kind: Annotated[Literal["image", "chat", "read", "login", "upload", "admin"] | None, Query()] = None,
             status: Annotated[Literal["done", "failed", "refused", "cancelled"] | None, Query()] = None,
             route: Annotated[str | None, Query(max_length=255, description="a path or a Gradio API name")] = None,
             request_id: Annotated[str | None, Query(max_length=128, description="an X-Request-ID")] = None,
             limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
             before: Annotated[int | None, Query(ge=1, le=MAX_ID, description="next_before of the last page")] = None,
             ) -> dict[str, Any]:
    """Newest first, a page at a time: pass `next_before` as `before` for the next page."""
    count_read(request, "admin")
    return services.admin.requests(start=since, end=until, user=user, kind=kind, status=status, route=route,
                                   request_id=request_id, limit=limit, before=before)
