"""API keys: random secrets that stand for a user on the APIs (`Authorization: Bearer atl_…`), kept only as a digest.

A key is 32 random bytes, URL-safe base64, prefixed `atl_` so that it is recognisable (and secret scanners find it).
The database holds its sha256 and its first characters, never the key: a key cannot be shown twice. Keys are looked
up on every request, so a revoked key (or a removed account) stops working at once, on every replica; a key's
last-used time is written at most once a minute, so that a busy script does not write the database on every call.

A fast hash is right here, unlike for passwords: a key carries 256 bits of chance, so nothing can be guessed from its
digest, and checking one costs a hash and an indexed read, not argon2's deliberate slowness.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from typing import Any

from services.accounts import AccountError
from storage.connections import IntegrityError, database
from storage.models import Account, ApiKey, utcnow

KEY_PREFIX = "atl_"
KEY_BYTES = 32
SHOWN_CHARS = len(KEY_PREFIX) + 6  # what a list shows of a key: "atl_AbC123…"
LABEL_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.:@-]{0,63}$")
MAX_KEYS_PER_USER = 100
# A key's last use is recorded when the stored time is older than this (a write per minute at most, per key).
TOUCH_EVERY = dt.timedelta(seconds=60)
# The shape of a key this server issued; anything else is refused before the database is asked.
_KEY_SHAPE = re.compile(r"^atl_[A-Za-z0-9_-]{40,64}$")


def digest(key: str) -> str:
    """The sha256 of a key, as stored."""
    return hashlib.sha256(key.encode()).hexdigest()


def looks_like_key(secret: str) -> bool:
    """Whether `secret` has the shape of an Atelier API key (a password never starts with atl_ and is that long by
    chance alone; Basic credentials use this to tell a key from a password)."""
    return bool(_KEY_SHAPE.match(secret))


def _when(value: Any) -> str | None:
    return value.isoformat() if value else None


class ApiKeyService:
    """Create, list, revoke and check users' API keys."""

    def create(self, user: str, name: str = "") -> tuple[str, dict[str, Any]]:
        """A new key for an existing account: (the key, shown this once; its listing). AccountError for an unknown
        account, a bad or taken label, or too many keys."""
        if not Account.select().where(Account.name == user).exists():
            raise AccountError(f"no user {user!r}.")
        name = name.strip() or self._free_label(user)
        if not LABEL_PATTERN.match(name):
            raise AccountError("a key's name must be 1-64 letters, digits, spaces or . _ : @ -, starting with a "
                               "letter or digit.")
        key = KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)
        try:
            with database.atomic():
                if ApiKey.select().where(ApiKey.user == user).count() >= MAX_KEYS_PER_USER:
                    raise AccountError(f"{user} already has {MAX_KEYS_PER_USER} keys; revoke one first.")
                if ApiKey.select().where((ApiKey.user == user) & (ApiKey.name == name)).exists():
                    raise AccountError(f"{user} already has a key named {name!r}; choose another name.")
                row = ApiKey.create(user=user, name=name, digest=digest(key), prefix=key[:SHOWN_CHARS])
        except IntegrityError:  # another replica took the name between the check and the insert
            raise AccountError(f"{user} already has a key named {name!r}; choose another name.") from None
        return key, self._listing(row)

    def list(self, user: str) -> list[dict[str, Any]]:
        """A user's keys, oldest first: name, the key's first characters, created and last used (never the key)."""
        rows = ApiKey.select().where(ApiKey.user == user).order_by(ApiKey.created_at, ApiKey.id)
        return [self._listing(row) for row in rows]

    def revoke(self, user: str, name: str) -> bool:
        """Delete the user's key with this name; False when there is none. It stops working at once."""
        return ApiKey.delete().where((ApiKey.user == user) & (ApiKey.name == name)).execute() > 0

    def revoke_all(self, user: str) -> int:
        """Delete every key of a user (their account goes); how many there were."""
        return ApiKey.delete().where(ApiKey.user == user).execute()

    def user_of(self, key: str) -> str | None:
        """The account a key stands for, or None for an unknown or revoked key or a removed account."""
        if not looks_like_key(key):
            return None
        row = (ApiKey.select(ApiKey.id, ApiKey.user, ApiKey.last_used_at)
               .join(Account, on=(Account.name == ApiKey.user))
               .where(ApiKey.digest == digest(key)).first())
        if row is None:
            return None
        now = utcnow()
        last = row.last_used_at
        if last is not None and last.tzinfo is None:  # SQLite gives naive UTC back
            last = last.replace(tzinfo=dt.UTC)
        if last is None or now - last >= TOUCH_EVERY:
            ApiKey.update(last_used_at=now).where(ApiKey.id == row.id).execute()
        return str(row.user)

    @staticmethod
    def _free_label(user: str) -> str:
        taken = {row.name for row in ApiKey.select(ApiKey.name).where(ApiKey.user == user)}
        return next(f"key-{n}" for n in range(1, MAX_KEYS_PER_USER + 2) if f"key-{n}" not in taken)

    @staticmethod
    def _listing(row: ApiKey) -> dict[str, Any]:
        return {"name": row.name, "prefix": f"{row.prefix}…", "created_at": _when(row.created_at),
                "last_used_at": _when(row.last_used_at)}
