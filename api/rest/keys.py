"""GET, POST /api/keys and DELETE /api/keys/{name}: your API keys, for the account panel of both UIs and scripts.

Keys are managed with a login (the cookie, or HTTP basic with the password), never with a key: a key that leaked
cannot make more keys for itself. A browser sends a cookie (and remembered basic credentials) on its own, so a
request that changes something must come from this server's own pages: another site's Origin is refused.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Request, Response
from pydantic import BaseModel, Field

from api.auth import basic_credentials, bearer_token, header_dict
from api.rest.common import NOT_YOURS, REFUSALS, Asking, Problem, Served, count_read, same_origin
from services.accounts import AccountError, Viewer
from services.api_keys import looks_like_key

# What the key routes may also answer: a request with a key or from another site, and a server without accounts.
OWNER_ONLY: dict[int | str, dict[str, Any]] = {
    403: {"model": Problem, "description": "Keys are managed with a login, not a key, and from this server's pages"},
    400: {"model": Problem, "description": "This server has no accounts"}}
KeyName = Annotated[str, Path(min_length=1, max_length=64, description="The key's name")]


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


def account_owner(request: Request, who: Asking) -> Viewer:
    """The user, when the request is logged in with a password or cookie (not a key) and comes from here."""
    auth = request.app.state.auth
    headers = header_dict(request.scope)
    credentials = basic_credentials(headers)
    by_key = bearer_token(headers) is not None or (credentials is not None and looks_like_key(credentials.password))
    if auth.cookie_user(headers) is None and by_key:
        raise HTTPException(403, "API keys are managed with your login (the UI, or HTTP basic with your password), "
                                 "not with a key.")
    same_origin(request)
    if not who.name:
        raise HTTPException(400, "API keys belong to accounts; this server has none (add one with `python app.py "
                                 "users add NAME`). Without accounts, a loopback server needs no key.")
    return who


Owner = Annotated[Viewer, Depends(account_owner)]
router = APIRouter()


@router.get("/keys", summary="Your API keys", response_model=KeyList, responses={**REFUSALS, **OWNER_ONLY})
def list_keys(request: Request, services: Served, who: Owner) -> dict[str, Any]:
    """Name, first characters, created and last used of each of your keys (a key is never shown again)."""
    count_read(request)
    return {"keys": services.api_keys.list(who.name)}


@router.post("/keys", summary="Create an API key", status_code=201, response_model=CreatedKey,
             responses={**REFUSALS, **OWNER_ONLY,
                        409: {"model": Problem, "description": "The name is taken, or you have too many keys"}})
def create_key(request: Request, services: Served, who: Owner,
               new: Annotated[NewKey | None, Body()] = None) -> dict[str, Any]:
    """A new key for you: `key` is shown this once (only its hash is kept)."""
    count_read(request)
    try:
        key, listed = services.api_keys.create(who.name, new.name if new is not None else "")
    except AccountError as err:
        raise HTTPException(409, str(err)) from None
    return {**listed, "key": key}


@router.delete("/keys/{name}", summary="Revoke an API key", status_code=204,
               responses={**REFUSALS, **NOT_YOURS, **OWNER_ONLY})
def revoke_key(request: Request, services: Served, who: Owner, name: KeyName) -> Response:
    """The key stops working at once, on every replica."""
    count_read(request)
    if not services.api_keys.revoke(who.name, name):
        raise HTTPException(404, f"You have no key named {name!r}.")
    return Response(status_code=204)
