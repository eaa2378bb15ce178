"""What the REST routers share: who is asking (a FastAPI dependency), the read limit (another), the refusals the
OpenAPI schema lists, and the answers for a request over its limit or when the replicas' Redis is out of reach.

Reads authenticate with the Gradio login cookie or HTTP basic, checked once by the gateway, which leaves the user in
the request state; the services, the authenticator and the limiter are the app's (app.state), set by api/server.py.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.responses import JSONResponse
from limits import RateLimitItem
from pydantic import BaseModel

from api.auth import bearer_token
from contracts import InvalidRequest
from services.accounts import Viewer
from services.admission import REFUSAL_STATE_KEY, UNAVAILABLE_MESSAGE
from services.container import Services
from services.user_limits import looser

# Ids are SQLite rowids: 1 up to int64's maximum. A bigger number would overflow the query (a 500), so it is
# refused as a 422 before any route runs.
MAX_ID = 2**63 - 1
Id = Annotated[int, Path(ge=1, le=MAX_ID, description="an id from /api/history or the Gradio API")]


class Problem(BaseModel):
    """Why a request was refused."""

    detail: str


# Every refusal a route may answer, so the OpenAPI schema (and the fuzz test that checks answers against it)
# knows them.
REFUSALS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "No valid login cookie or HTTP basic credentials"},
    429: {"model": Problem, "description": "Over the rate limit; Retry-After says when to try again"},
}
NOT_YOURS: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "No such id of yours"}}
# Routes that change something: also refused from another site's page (see same_site).
CROSS_SITE: dict[int | str, dict[str, Any]] = {
    403: {"model": Problem, "description": "Sent by a page of another site (the login cookie is not enough)"}}
# Routes that change one item of yours.
CHANGES = {**REFUSALS, **NOT_YOURS, **CROSS_SITE}
# Routes that read a body.
BODY: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "The body could not be read (not JSON, or a broken form)"},
    413: {"model": Problem, "description": "The body is larger than the route takes (1 MiB; an archive: "
                                           "ATELIER_ARCHIVE_MAX_BYTES)"}}


def services_of(request: Request) -> Services:
    """The app's services (a FastAPI dependency)."""
    return request.app.state.services  # type: ignore[no-any-return]


def viewer(request: Request) -> Viewer:
    """Who is asking, as resolved by the gateway (argon2 runs at most once per request); 401 for nobody."""
    auth = request.app.state.auth
    name = auth.user_of(request)
    if name is None:
        raise HTTPException(401, "Log in (the Gradio login cookie), or send HTTP basic credentials or an API key "
                                 "(Authorization: Bearer atl_…).",
                            headers={"WWW-Authenticate": 'Basic realm="Atelier"'})
    return auth.viewer(name)  # type: ignore[no-any-return]


class TooManyReads(Exception):
    """A REST read over the read limit: the limit, and the seconds until it frees up."""

    def __init__(self, item: RateLimitItem, retry: int) -> None:
        super().__init__(str(item))
        self.item, self.retry = item, retry


def count_read(request: Request, kind: str = "read") -> None:
    """Count the request against the read limit (or, for `kind` "upload", the upload limit) of whoever asks, per
    route (`kind` "admin": an admin route, see services/user_limits.looser); TooManyReads over it. Off where limits
    do not apply (api.auth.limits_apply). Each route calls it first thing, once its parameters and its user are known
    (as slowapi's decorator did): a refused request (401, 422) costs nothing."""
    state = request.app.state
    if not state.limiter.enabled:
        return
    user = state.auth.user_of(request)
    # The user's own limit when an admin set one (services/user_limits.py), else the setting's; an account import
    # counts as an upload; an admin route as a read, never against less than the setting's (looser's why).
    counted = "read" if kind == "admin" else kind
    if user:
        item: RateLimitItem = state.services.limits.effective(user).item(counted)
        item = looser(item, state.read_limit) if kind == "admin" else item
    else:
        item = state.upload_limit if kind == "upload" else state.read_limit
    route = request.scope["endpoint"].__name__
    key = state.auth.rate_key(request)
    strategy = state.limiter.limiter
    if not strategy.hit(item, "rest", route, key):
        reset, _ = strategy.get_window_stats(item, "rest", route, key)
        setattr(request.state, REFUSAL_STATE_KEY, "read")  # its request log row: refused by the read limit
        raise TooManyReads(item, max(1, math.ceil(reset - time.time())))


def same_origin(request: Request) -> None:
    """Refuse (403) a request that changes something when a page of another site sent it: the login cookie (and
    remembered basic credentials) go with such requests (Gradio sets the cookie SameSite=None over HTTPS), so they
    alone cannot say the user meant it. Browsers name the sender in Sec-Fetch-Site and Origin; scripts and
    gradio_client send neither and pass. Reads (GET, HEAD) change nothing and always pass; so do a request whose API
    key (Authorization: Bearer) proves who sent it, as no page can borrow a key, and one from a site the owner trusts
    (ATELIER_CORS_ORIGINS)."""
    if request.method in ("GET", "HEAD") or by_key(request):
        return
    site = request.headers.get("sec-fetch-site", "")
    origin = request.headers.get("origin", "")
    if origin and origin.lower() in request.app.state.services.settings.cors_origins:
        return
    foreign = site == "cross-site" or (origin not in ("", "null") and urlsplit(origin).netloc.lower()
                                        != request.headers.get("host", "").lower())
    if foreign or origin == "null":
        raise HTTPException(403, "This request came from a page of another site; Atelier refuses it. Use Atelier's "
                                 "own pages, an API key (Authorization: Bearer), or ask the owner to trust the site "
                                 "(ATELIER_CORS_ORIGINS).")


def by_key(request: Request) -> bool:
    """Whether the request carries an API key (Authorization: Bearer) of the user it was let in as: an explicit
    credential, never sent by a browser on its own."""
    token = bearer_token(request.headers)
    auth = request.app.state.auth
    user = auth.user_of(request)
    return bool(token and user and auth.keys is not None and auth.keys.user_of(token) == user)


def found(done: Any, noun: str, ident: int) -> None:
    """404 "<noun> <id> does not exist." unless `done` (what a service answers for an id that is not yours)."""
    if not done:
        raise HTTPException(404, f"{noun} {ident} does not exist.")


@dataclass(frozen=True)
class ItemRoutes:
    """One kind of item (a job, a conversation) whose routes mark, unmark and delete one: where, and the services'
    calls that do it."""

    path: str  # "/history/{job_id}": the item's own path, with its id parameter
    param: str  # "job_id"
    noun: str  # "job": in summaries, 404 messages and the endpoints' names
    setter: Callable[[Services], Callable[[int, str, bool], bool]]  # (id, user, value) -> it was the user's
    deleter: Callable[[Services], Callable[[list[int], str | None], dict[str, list[int]]]]  # (ids, scope)
    favourite: type[BaseModel]  # the answer of a mark: {param: id, "favourite": value}
    deleted: type[BaseModel]  # the answer of a delete: {"deleted", "missing"}
    delete_summary: str
    delete_doc: str
    selection: type[BaseModel]  # the body of a delete of many: {param + "s": [ids]}
    bulk_summary: str


def declare_item_routes(router: APIRouter, item: ItemRoutes) -> None:
    """POST and DELETE `{path}/favourite` (mark, unmark) and DELETE `{path}` (delete one), each refusing another
    site's page (403) and answering 404 for an id that is not the caller's; then POST `{collection}/delete` (delete
    many, the ids not the caller's listed as missing)."""
    def mark(value: bool) -> Callable[[Request, Services, Viewer, int], BaseModel]:
        def run(request: Request, services: Services, who: Viewer, ident: int) -> BaseModel:
            count_read(request)
            found(item.setter(services)(ident, who.name, value), item.noun, ident)
            return item.favourite(**{item.param: ident, "favourite": value})
        return run

    def delete(request: Request, services: Services, who: Viewer, ident: int) -> BaseModel:
        count_read(request)
        done = item.deleter(services)([ident], who.scope)
        found(done["deleted"], item.noun, ident)
        return item.deleted(**done)

    def delete_many(request: Request, services: Services, who: Viewer, body: Any) -> BaseModel:
        count_read(request)
        return item.deleted(**item.deleter(services)(getattr(body, f"{item.param}s"), who.scope))

    a, plural = "an" if item.noun[0] in "aeiou" else "a", f"{item.noun}s"
    ident = inspect.Parameter(item.param, inspect.Parameter.KEYWORD_ONLY, annotation=Id)
    router.post(f"{item.path}/favourite", summary=f"Mark one of your {plural} as a favourite", responses=CHANGES,
                dependencies=[SameSite], description="Favourites are kept by retention, and can be searched for "
                f"(favourite=true); 404 for {a} {item.noun} not yours.")(
        _endpoint(f"favourite_{item.noun}", ident, mark(True), item.favourite))
    router.delete(f"{item.path}/favourite", summary=f"Unmark one of your favourite {plural}", responses=CHANGES,
                  dependencies=[SameSite], description=f"404 for {a} {item.noun} not yours.")(
        _endpoint(f"unfavourite_{item.noun}", ident, mark(False), item.favourite))
    router.delete(item.path, summary=item.delete_summary, responses=CHANGES, dependencies=[SameSite],
                  description=item.delete_doc)(_endpoint(f"delete_{item.noun}", ident, delete, item.deleted))
    body = inspect.Parameter("body", inspect.Parameter.KEYWORD_ONLY, annotation=item.selection)
    router.post(f"{item.path.rsplit('/', 1)[0]}/delete", summary=item.bulk_summary,
                responses={**REFUSALS, **CROSS_SITE, **BODY}, dependencies=[SameSite],
                description="In one transaction; ids that are not yours come back in `missing`, untouched.")(
        _endpoint(f"delete_{plural}", body, delete_many, item.deleted))


def _endpoint(name: str, param: inspect.Parameter, run: Callable[[Request, Services, Viewer, Any], BaseModel],
              answer: type[BaseModel]) -> Callable[..., BaseModel]:
    """An endpoint named `name` (the read limit counts per endpoint name) whose one parameter of its own is `param`
    (the path id, or the body): FastAPI reads its parameters from the signature given here."""
    def endpoint(request: Request, services: Services, who: Viewer, **given: Any) -> BaseModel:
        return run(request, services, who, given[param.name])

    endpoint.__name__ = endpoint.__qualname__ = name
    named = inspect.Parameter.KEYWORD_ONLY
    endpoint.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("request", named, annotation=Request),
         inspect.Parameter("services", named, annotation=Served),
         inspect.Parameter("who", named, annotation=Asking), param], return_annotation=answer)
    return endpoint


def invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """A service's refusal (InvalidRequest): 404 when what it refuses is the id in the path (another user's id, or
    one that does not exist: the same answer), else 422 with a message per field, in FastAPI's own shape."""
    assert isinstance(exc, InvalidRequest)
    errors: dict[str, str] = dict(exc.errors)
    if len(errors) == 1 and next(iter(errors)) in request.path_params:
        return JSONResponse({"detail": next(iter(errors.values()))}, status_code=404)
    where = "query" if request.method in ("GET", "HEAD") else "body"
    detail = [{"loc": ["path" if f in request.path_params else where, f], "msg": m, "type": "value_error"}
              for f, m in errors.items()]
    return JSONResponse({"detail": detail}, status_code=422)


Served = Annotated[Services, Depends(services_of)]
Asking = Annotated[Viewer, Depends(viewer)]
SameSite = Depends(same_origin)


def too_many_reads(request: Request, exc: Exception) -> JSONResponse:
    """429 with Retry-After and a message, like the gateway's answer for Gradio routes."""
    assert isinstance(exc, TooManyReads)
    message = f"Too many requests: the limit is {exc.item}. Try again in {exc.retry} s."
    return JSONResponse({"detail": message, "error": message}, status_code=429,
                        headers={"Retry-After": str(exc.retry)})


def shared_state_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """503 with a message when the replicas' Redis does not answer (the limits cannot be checked)."""
    return JSONResponse({"detail": UNAVAILABLE_MESSAGE, "error": UNAVAILABLE_MESSAGE}, status_code=503,
                        headers={"Retry-After": "10"})
