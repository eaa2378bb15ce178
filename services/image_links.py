"""Expiring links to stored images, as OpenAI's image API hands out: anyone holding the link may fetch the one PNG
until it expires, without a key, so that a client which only downloads URLs (a chat front end) can show it.

A link is `/v1/images/files/{file_id}?expires=…&signature=…`: an HMAC-SHA256 over the file and the expiry, with
a secret every replica shares (kept in the database, made on first use). It names no path, and a
link for one file or one time says nothing about another.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

from storage.connections import IntegrityError
from storage.models import ImageFile, ImageJob, ServerSecret

SECRET_NAME = "image-link-key"  # noqa: S105 - the name of the secret, not the secret
DEFAULT_TTL_S = 3600  # OpenAI's own image URLs last an hour


class ImageLinks:
    """Signs and checks image links."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._secret: bytes | None = None

    def sign(self, file_id: int, ttl_s: int = DEFAULT_TTL_S) -> tuple[int, str]:
        """(expires, signature) for a link to one stored image (the caller has checked it is the user's)."""
        expires = int(self.clock()) + ttl_s
        return expires, self._signature(file_id, expires)

    def store_key(self, file_id: int, expires: int, signature: str) -> str | None:
        """The image's key in the store when the link is genuine and unexpired, else None."""
        given = signature.encode("utf-8", "replace")  # compare_digest takes ASCII text only: compare bytes
        if expires < self.clock() or not hmac.compare_digest(given, self._signature(file_id, expires).encode()):
            return None
        row = ImageFile.select(ImageFile.path).join(ImageJob).where(ImageFile.id == file_id).first()
        return row.path if row is not None else None

    def _signature(self, file_id: int, expires: int) -> str:
        return hmac.new(self._key(), f"{file_id}:{expires}".encode(), hashlib.sha256).hexdigest()

    def _key(self) -> bytes:
        if self._secret is None:
            row = ServerSecret.get_or_none(ServerSecret.name == SECRET_NAME)
            if row is None:
                try:
                    row = ServerSecret.create(name=SECRET_NAME, value=secrets.token_hex(32))
                except IntegrityError:  # another replica made it first: use theirs
                    row = ServerSecret.get(ServerSecret.name == SECRET_NAME)
            self._secret = bytes.fromhex(row.value)
        return self._secret
