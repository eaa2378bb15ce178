"""A cache for identical requests: a stored result is reused instead of computing it again.

An image request is identical when the model (and its revision), every parameter and a fixed seed match; a
chat request when the model, the conversation so far and the options match at temperature 0 (anything else
is sampled and must differ). Entries are the stored results themselves, scoped to their user, bounded by age
and by a number of entries per user.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

from services import metrics
from storage.connections import database
from storage.models import Conversation, ImageJob, Message, utcnow


def cache_key(*parts: Any) -> str:
    """A stable digest of everything that decides a result."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


class ResultCache:
    """Finds reusable results in history; switchable off; bounded by age and entries per user."""

    def __init__(self, enabled: bool = True, max_age_s: float = 7 * 86400, max_entries: int = 1000) -> None:
        self.enabled = enabled
        self.max_age_s = max_age_s
        self.max_entries = max_entries

    def _cutoff(self) -> dt.datetime:
        return utcnow() - dt.timedelta(seconds=self.max_age_s)

    def find_image_job(self, user: str, key: str) -> ImageJob | None:
        """The newest finished job of this user with this key, within the age bound."""
        if not self.enabled or self.max_entries == 0:
            return None
        hit = (ImageJob.select()
               .where((ImageJob.user == user) & (ImageJob.cache_key == key) & (ImageJob.status == "done")
                      & (ImageJob.created_at >= self._cutoff()))
               .order_by(ImageJob.id.desc()).first())
        metrics.cache_lookup("image", hit is not None)
        return hit

    def find_reply(self, user: str, key: str) -> Message | None:
        """The newest finished reply of this user with this key, within the age bound."""
        if not self.enabled or self.max_entries == 0:
            return None
        hit = (Message.select().join(Conversation)
               .where((Conversation.user == user) & (Message.cache_key == key) & (Message.status == "done")
                      & (Message.created_at >= self._cutoff()))
               .order_by(Message.id.desc()).first())
        metrics.cache_lookup("chat", hit is not None)
        return hit

    def trim(self, user: str) -> None:
        """Forget the oldest keys of this user beyond max_entries (the results stay in history)."""
        with database.atomic():
            keep_jobs = (ImageJob.select(ImageJob.id).where((ImageJob.user == user) & ImageJob.cache_key.is_null(False))
                         .order_by(ImageJob.id.desc()).limit(self.max_entries))
            ImageJob.update(cache_key=None).where((ImageJob.user == user) & ImageJob.cache_key.is_null(False)
                                                  & ImageJob.id.not_in(keep_jobs)).execute()
            owned = Conversation.select(Conversation.id).where(Conversation.user == user)
            keep_replies = (Message.select(Message.id)
                            .where(Message.conversation.in_(owned) & Message.cache_key.is_null(False))
                            .order_by(Message.id.desc()).limit(self.max_entries))
            Message.update(cache_key=None).where(Message.conversation.in_(owned) & Message.cache_key.is_null(False)
                                                 & Message.id.not_in(keep_replies)).execute()
