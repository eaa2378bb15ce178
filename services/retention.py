"""Retention: image jobs and conversations older than N days go, with their files and objects, by the upkeep thread.

N is the server's ATELIER_RETENTION_DAYS and each user's own `retention_days` setting; the shorter applies (a user
may keep less than the server does, never more). 0 or unset keeps everything. Kept whatever their age: favourites,
jobs in a collection (the user gathered them on purpose), running jobs, and conversations with a reply being
written. A job's age is its creation; a conversation's is its last activity.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from services.chat import ChatService
from services.history import ID_CHUNK, HistoryService
from services.periodic import Periodic
from services.user_settings import RETENTION_DAYS, UserSettings
from storage.models import CollectionItem, Conversation, ImageJob, ReplyDraft

log = logging.getLogger(__name__)


class Retention:
    """Deletes what each user's retention lets go, every `interval_s` in a background thread."""

    def __init__(self, history: HistoryService, chat: ChatService, server_days: int, interval_s: float,
                 settings: UserSettings | None = None) -> None:
        self.history = history
        self.chat = chat
        self.server_days = server_days
        self.interval_s = interval_s
        self.settings = settings or UserSettings()
        self.last: dict[str, int] = {}
        self._periodic = Periodic("retention", interval_s, self.sweep)

    def days(self, user: str) -> int | None:
        """The retention in force for `user`: the shorter of the server's and theirs; None keeps everything."""
        found = [d for d in (self.server_days, self.settings.get(user, RETENTION_DAYS)) if d]
        return min(found) if found else None

    def describe(self, user: str) -> dict[str, Any]:
        """The server's, the user's and the effective retention, for the UIs' settings."""
        return {"server_days": self.server_days or None, "user_days": self.settings.get(user, RETENTION_DAYS),
                "effective_days": self.days(user)}

    def sweep(self, now: dt.datetime | None = None) -> dict[str, int]:
        """Delete every user's expired jobs and conversations now; {"jobs": n, "conversations": n}."""
        now = now or dt.datetime.now(dt.UTC)
        users = set(self.settings.users_with(RETENTION_DAYS))
        if self.server_days:
            users |= {j.user for j in ImageJob.select(ImageJob.user).distinct()}
            users |= {c.user for c in Conversation.select(Conversation.user).distinct()}
        done = {"jobs": 0, "conversations": 0}
        for user in sorted(users):
            days = self.days(user)
            if days:
                cutoff = now - dt.timedelta(days=days)
                done["jobs"] += self._expire_jobs(user, cutoff)
                done["conversations"] += self._expire_conversations(user, cutoff)
        if any(done.values()):
            log.info("retention deleted %d job(s) and %d conversation(s)", done["jobs"], done["conversations"])
        self.last = done
        return done

    def _expire_jobs(self, user: str, cutoff: dt.datetime) -> int:
        kept = CollectionItem.select(CollectionItem.job)
        expired = (ImageJob.select(ImageJob.id).where(
            (ImageJob.user == user) & (ImageJob.created_at < cutoff) & (ImageJob.favourite == False)  # noqa: E712
            & (ImageJob.status != "running") & ImageJob.id.not_in(kept)).order_by(ImageJob.id).limit(ID_CHUNK))
        deleted = 0
        while (ids := [j.id for j in expired]) and (batch := len(self.history.delete_jobs(ids, user)["deleted"])):
            deleted += batch
        return deleted

    def _expire_conversations(self, user: str, cutoff: dt.datetime) -> int:
        writing = ReplyDraft.select(ReplyDraft.conversation)
        expired = (Conversation.select(Conversation.id).where(
            (Conversation.user == user) & (Conversation.updated_at < cutoff)
            & (Conversation.favourite == False) & Conversation.id.not_in(writing))  # noqa: E712
            .order_by(Conversation.id).limit(ID_CHUNK))
        deleted = 0
        while (ids := [c.id for c in expired]) and (batch := len(self.chat.delete_conversations(ids, user)["deleted"])):
            deleted += batch
        return deleted

    def start(self) -> None:
        """Sweep in the background until stop(); nothing with an interval of 0."""
        if self.interval_s > 0:
            self._periodic.start()

    def stop(self) -> None:
        """End the background sweep."""
        self._periodic.stop()
