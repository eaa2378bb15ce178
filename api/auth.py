"""Who is asking: the Gradio login cookie or HTTP basic credentials, resolved to a Viewer.

argon2 is slow on purpose (a large fraction of a second of CPU and 64 MiB per check), so basic credentials
are verified once per request, by the gateway, in worker threads of their own (a burst of guesses can
neither block the event loop nor take FastAPI's thread pool), and only *successful* verifications are
remembered, for VERIFIED_TTL_S, under a keyed hash of the credentials (never the password itself). When that
lapses, credentials that were right before are checked again in a lane of their own, ahead of any guesses.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import ipaddress
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any

import anyio
from cachetools import TTLCache

from api import gradio_internals
from services.accounts import AccountService, Viewer, is_loopback
from services.api_keys import ApiKeyService, looks_like_key
from settings import RateLimitMode

# A password change or a removed account stops working through remembered credentials after this long.
VERIFIED_TTL_S = 30.0
VERIFIED_MAX_ENTRIES = 1024
# Credentials that verified before are checked in a lane of their own when their entry lapses, so that a
# user's next request never waits behind a burst of guesses; being known grants no access, only the lane.
KNOWN_TTL_S = 86400.0
# argon2 checks of new credentials at once: each takes 64 MiB and a core; half the cores (at most 4, so a
# burst holds at most 256 MiB) leave the rest to the event loop and the models.
VERIFY_THREADS = min(4, max(1, (os.cpu_count() or 2) // 2))
# Where the gateway leaves the resolved user for the REST routes (Starlette's request.state reads it).
USER_STATE_KEY = "atelier_user"


@dataclass(frozen=True)
class Credentials:
    """A name and password from an `Authorization: Basic` header."""

    name: str
    password: str = field(repr=False)


def bearer_token(headers: dict[str, str]) -> str | None:
    """The token of an `Authorization: Bearer …` header (OpenAI's clients send their API key so), or None."""
    authorization = headers.get("authorization", "")
    if not authorization.lower().startswith("bearer "):
        return None
    return authorization[7:].strip() or None


def basic_credentials(headers: dict[str, str]) -> Credentials | None:
    """The Basic credentials of a request, or None when there are none or they are malformed."""
    authorization = headers.get("authorization", "")
    if not authorization.lower().startswith("basic "):
        return None
    try:
        name, _, password = base64.b64decode(authorization[6:], validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return Credentials(name, password)


@dataclass
class Authenticator:
    """Resolves the user of a request; `gradio_app` is Gradio's mounted App (its login tokens live there)."""

    accounts: AccountService
    required: bool
    trusted_proxies: list[str] = field(default_factory=list)
    keys: ApiKeyService | None = None  # API keys (Bearer, or as the password of HTTP basic); None: none accepted
    gradio_app: Any = None
    ttl_s: float = VERIFIED_TTL_S
    max_entries: int = VERIFIED_MAX_ENTRIES
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self._secret = secrets.token_bytes(32)  # per process: the cache keys mean nothing outside it
        self._verified: TTLCache[bytes, bool] = TTLCache(self.max_entries, self.ttl_s, timer=self.clock)
        self._lock = threading.Lock()
        self._in_flight: dict[bytes, asyncio.Future[bool]] = {}
        self._known: TTLCache[bytes, bool] = TTLCache(self.max_entries, KNOWN_TTL_S, timer=self.clock)
        self._new = anyio.CapacityLimiter(VERIFY_THREADS)
        self._returning = anyio.CapacityLimiter(1)

    async def authenticate(self, headers: dict[str, str], attempt: Callable[[str], None]) -> str | None:
        """The user of a request ('' in single-user mode), or None when it has no valid login.

        `attempt(name)` is called before each argon2 check of credentials not proven right before (not for
        remembered ones, nor for the same credentials already being checked) and may raise to refuse it
        before any work.
        """
        if not self.required:
            return ""  # single-user mode: everything belongs to ''
        if (user := self.cookie_user(headers)) is not None:
            return user
        if (token := bearer_token(headers)) is not None:
            return await self._key_user(token, None, attempt)
        credentials = basic_credentials(headers)
        if credentials is None:
            return None
        if looks_like_key(credentials.password):  # AUTOMATIC1111's --api-auth style: the account's name and a key
            return await self._key_user(credentials.password, credentials.name, attempt)
        key = self._fingerprint(credentials)
        with self._lock:
            if key in self._verified:  # TTLCache: an expired entry is not in it
                return credentials.name
            known = key in self._known
        pending = self._in_flight.get(key)
        if pending is None:
            if not known:  # proven right before: not a guess, so neither counted nor refused
                attempt(credentials.name)
            pending = asyncio.ensure_future(self._verify(key, credentials, self._returning if known else self._new))
            self._in_flight[key] = pending
            pending.add_done_callback(lambda _: self._in_flight.pop(key, None))
        # shield: one waiting client going away must not cancel the check the others wait on.
        return credentials.name if await asyncio.shield(pending) else None

    async def _key_user(self, token: str, name: str | None, attempt: Callable[[str], None]) -> str | None:
        """The user an API key stands for (and, with a name, only when it is that user's key), else None. A key is a
        hash and an indexed read, so every use is checked (a revoked key fails at once); a wrong one counts as a failed
        login of `name` (or of no name) from this address, and past the limit is refused (attempt raises)."""
        user = None
        if self.keys is not None:
            user = await anyio.to_thread.run_sync(self.keys.user_of, token)
        if user is None or (name is not None and user != name):
            attempt(name or "")
            return None
        return user

    def cookie_user(self, headers: dict[str, str]) -> str | None:
        """The name behind a Gradio login cookie, or None."""
        if self.gradio_app is None or not (cookie_header := headers.get("cookie")):
            return None
        cookies: SimpleCookie = SimpleCookie()
        try:
            cookies.load(cookie_header)
        except Exception:  # a malformed cookie header is no login
            return None
        for name in gradio_internals.cookie_names(self.gradio_app):
            morsel = cookies.get(name)
            if morsel is not None and (user := gradio_internals.user_of_token(self.gradio_app, morsel.value)):
                return user
        return None

    async def _verify(self, key: bytes, credentials: Credentials, lane: anyio.CapacityLimiter) -> bool:
        ok = await anyio.to_thread.run_sync(self.accounts.verify, credentials.name, credentials.password,
                                            limiter=lane)
        with self._lock:
            if ok:  # failures are never remembered: each guess costs a full check and a login attempt
                self._verified[key] = self._known[key] = True
            else:
                self._known.pop(key, None)
        return ok

    def _fingerprint(self, credentials: Credentials) -> bytes:
        # Length-prefixed so that no two (name, password) pairs share a message.
        message = f"{len(credentials.name)}:{credentials.name}:{credentials.password}".encode()
        return hashlib.blake2b(message, key=self._secret, digest_size=32).digest()

    def user_of(self, request: Any) -> str | None:
        """The user the gateway resolved for this request (None: no valid login, or no gateway ran)."""
        return request.scope.get("state", {}).get(USER_STATE_KEY)

    def rate_key(self, request: Any) -> str:
        """slowapi's key for a Starlette request: the user when logged in, else the client address."""
        user = self.user_of(request)
        return f"user:{user}" if user else f"ip:{self.client_ip(request.scope, header_dict(request.scope))}"

    def viewer(self, name: str) -> Viewer:
        """The Viewer for a resolved name."""
        return self.accounts.viewer(name)

    def client_ip(self, scope: dict[str, Any], headers: dict[str, str]) -> str:
        """The client's address; X-Forwarded-For is believed only when the peer is a trusted proxy."""
        peer = (scope.get("client") or ("unknown", 0))[0]
        forwarded = headers.get("x-forwarded-for")
        if not forwarded or not self._trusted(peer):
            return peer
        # Walk from the right: the first address that is not one of our proxies is the client.
        for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
            if not self._trusted(hop):
                return hop
        return peer

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        for proxy in self.trusted_proxies:
            try:
                if ip in ipaddress.ip_network(proxy, strict=False):
                    return True
            except ValueError:
                continue
        return False


def limits_apply(mode: RateLimitMode, host: str, share: bool, has_users: bool) -> bool:
    """Whether rate limits and the queue quota apply: `auto` applies them on a shared server (accounts, a
    network host or a share link) and not to the one owner of a loopback server without accounts."""
    if mode != "auto":
        return mode == "on"
    return has_users or share or not is_loopback(host)


def header_dict(scope: dict[str, Any]) -> dict[str, str]:
    """ASGI headers as a lower-case dict (the last value of a repeated header wins)."""
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
