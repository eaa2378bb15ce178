"""REST for the account panel (both UIs) and scripts: your API keys (create, list, revoke) and your running jobs
(list, stop), whichever way they came in (UI, Gradio API, OpenAI or AUTOMATIC1111 API, MCP).

Keys are managed with a login (the cookie, or HTTP basic with the password), never with a key: a key that leaked
cannot make more keys for itself. A browser sends a cookie (and remembered basic credentials) on its own, so a
request that changes something must come from this server's own pages: another site's Origin is refused.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Request, Response
from pydantic import BaseModel, Field
from slowapi import Limiter

from api.auth import Authenticator, basic_credentials, bearer_token, header_dict
from api.rest import NOT_YOURS, REFUSALS, Problem
from services.accounts import AccountError, Viewer
from services.api_keys import looks_like_key
from services.container import Services

# What the key routes may also answer: a request with a key or from another site, and a server without accounts.
OWNER_ONLY: dict[int | str, dict[str, Any]] = {
    403: {"model": Problem, "description": "Keys are managed with a login, not a key, and from this server's pages"},
    400: {"model": Problem, "description": "This server has no accounts"}}
KeyName = Annotated[str, Path(min_length=1, max_length=64, description="The key's name")]
Ref = Annotated[str, Path(pattern=r"^[0-9a-f]{8,64}$", description="A running job's ref, from GET /api/jobs")]


class NewKey(BaseModel):
    """What to call the key (empty: key-1, key-2, …)."""

    name: str = Field(default="", pattern=r"^$|^[A-Za-z0-9][A-Za-z0-9 _.:@-]{0,63}$",
                      description="1-64 letters, digits, spaces or . _ : @ -, starting with a letter or digit")


class KeyListing(BaseModel):
    """A key as listed: never the key itself."""

    name: str
    prefix: str
    created_at: str | None
    last_used_at: str | None


class CreatedKey(KeyListing):
    """A new key: `key` is shown this once."""

    key: str


class KeyList(BaseModel):
    """Your keys, oldest first."""

    keys: list[KeyListing]


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


def build_router(services: Services, auth: Authenticator, limiter: Limiter, read_limit: str) -> APIRouter:
    """Routes bound to `services`, mounted under /api."""
    router = APIRouter()

    def viewer(request: Request) -> Viewer:
        name = auth.user_of(request)
        if name is None:
            raise HTTPException(401, "Log in (the Gradio login cookie) or send HTTP basic credentials or an API key.",
                                headers={"WWW-Authenticate": 'Basic realm="Atelier"'})
        return auth.viewer(name)

    who_is_asking = Depends(viewer)

    def account_owner(request: Request, who: Viewer = who_is_asking) -> Viewer:
        """The user, when the request is logged in with a password or cookie (not a key) and comes from here."""
        headers = header_dict(request.scope)
        credentials = basic_credentials(headers)
        by_key = bearer_token(headers) is not None or (credentials is not None and looks_like_key(credentials.password))
        if auth.cookie_user(headers) is None and by_key:
            raise HTTPException(403, "API keys are managed with your login (the UI, or HTTP basic with your "
                                     "password), not with a key.")
        same_origin(request)
        if not who.name:
            raise HTTPException(400, "API keys belong to accounts; this server has none (add one with `python "
                                     "app.py users add NAME`). Without accounts, a loopback server needs no key.")
        return who

    owner = Depends(account_owner)
    add_key_routes(router, services, limiter, read_limit, owner)
    add_job_routes(router, services, limiter, read_limit, who_is_asking)
    return router


def same_origin(request: Request) -> None:
    """A 403 for a request that changes something from another site's page (its Origin names another host)."""
    origin = request.headers.get("origin")
    if request.method in ("GET", "HEAD") or not origin:
        return
    if urlsplit(origin).netloc != request.headers.get("host", ""):
        raise HTTPException(403, "This request came from another site's page; it is refused.")


def add_key_routes(router: APIRouter, services: Services, limiter: Limiter, read_limit: str, owner: Any) -> None:
    """GET, POST /api/keys and DELETE /api/keys/{name}."""
    keys = services.api_keys

    @router.get("/keys", summary="Your API keys", response_model=KeyList, responses={**REFUSALS, **OWNER_ONLY})
    @limiter.limit(read_limit)
    def list_keys(request: Request, who: Viewer = owner) -> dict[str, Any]:
        """Name, first characters, created and last used of each of your keys (a key is never shown again)."""
        return {"keys": keys.list(who.name)}

    @router.post("/keys", summary="Create an API key", status_code=201, response_model=CreatedKey,
                 responses={**REFUSALS, **OWNER_ONLY,
                            409: {"model": Problem, "description": "The name is taken, or you have too many keys"}})
    @limiter.limit(read_limit)
    def create_key(request: Request, new: Annotated[NewKey | None, Body()] = None,
                   who: Viewer = owner) -> dict[str, Any]:
        """A new key for you: `key` is shown this once (only its hash is kept)."""
        try:
            key, listed = keys.create(who.name, new.name if new is not None else "")
        except AccountError as err:
            raise HTTPException(409, str(err)) from None
        return {**listed, "key": key}

    @router.delete("/keys/{name}", summary="Revoke an API key", status_code=204,
                   responses={**REFUSALS, **NOT_YOURS, **OWNER_ONLY})
    @limiter.limit(read_limit)
    def revoke_key(request: Request, name: KeyName, who: Viewer = owner) -> Response:
        """The key stops working at once, on every replica."""
        if not keys.revoke(who.name, name):
            raise HTTPException(404, f"You have no key named {name!r}.")
        return Response(status_code=204)


def add_job_routes(router: APIRouter, services: Services, limiter: Limiter, read_limit: str,
                   who_is_asking: Any) -> None:
    """GET /api/jobs and POST /api/jobs/{ref}/stop."""
    running = services.running

    @router.get("/jobs", summary="Your running jobs", response_model=JobList, responses=REFUSALS)
    @limiter.limit(read_limit)
    def jobs(request: Request, who: Viewer = who_is_asking) -> dict[str, Any]:
        """Your image jobs and chat replies running now on this server, whichever way they came in (an admin sees
        everyone's)."""
        return {"jobs": [job.describe() for job in running.of(who.scope)]}

    @router.post("/jobs/{ref}/stop", summary="Stop one of your running jobs",
                 responses={**REFUSALS, **NOT_YOURS, 403: {"model": Problem, "description": "From another site"}})
    @limiter.limit(read_limit)
    def stop(request: Request, ref: Ref, who: Viewer = who_is_asking) -> dict[str, Any]:
        """Stops the job within a step (or a token); it ends as cancelled in your history."""
        same_origin(request)
        if not running.stop(ref, who.scope):
            raise HTTPException(404, f"No running job {ref} of yours.")
        return {"stopped": ref}
