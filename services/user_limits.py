"""Per-user limits: an admin's overrides of a user's rate limits and queue quota, stored in the database, and the
effective limits the gateway applies to each request (the settings' defaults, overridden field by field), with
whether the account may act at all (a disabled or removed account may not, whatever login it still holds).

Cheap per request: effective() answers from a per-process cache; only a user seen for the first time (or after a
change) costs two indexed queries. Changes reach every replica through a generation counter in the shared state
(storage/shared_state.py: Redis, or process memory for one replica): the replica that changes a user's limits
bumps it, and each replica reads it at most once per RECHECK_S, dropping its cache when it moved. A cached entry
is also read again after MAX_AGE_S, which bounds how long a replica can apply old limits when replicas share a
database but no Redis (then nothing else tells them).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

from cachetools import TTLCache
from limits import RateLimitItem, parse_many

from storage.connections import IntegrityError, database, for_update
from storage.models import Account, UserLimit, utcnow
from storage.shared_state import UNAVAILABLE, Generations

log = logging.getLogger(__name__)

GENERATION = "user-limits"
RECHECK_S = 1.0
MAX_AGE_S = 30.0
MAX_CACHED_USERS = 10_000
MAX_QUEUE_QUOTA = 1000
# The gateway's kinds of limited request and the field that holds each one's rate (login attempts are limited per
# address and name tried, never per user: no override).
RATE_FIELDS = {"image": "image_jobs", "chat": "chat_messages", "upload": "uploads", "read": "reads"}


class LimitsError(ValueError):
    """A bad override (an unknown user, a rate that does not parse, a quota out of range); the message says which."""


@lru_cache(maxsize=256)
def parse_rate(text: str) -> RateLimitItem:
    """One `limits` rate ("10/minute", "100 per hour"); LimitsError when it is not exactly one rate of at least 1."""
    try:
        items = parse_many(text)
    except ValueError:
        items = []
    if len(items) != 1:
        raise LimitsError(f"{text!r} is not a rate: write one amount per period, such as 10/minute or 100/hour.")
    if items[0].amount < 1:
        raise LimitsError(f"{text!r} allows nothing: the amount must be at least 1 (disable the user instead).")
    return items[0]


@dataclass(frozen=True)
class Limits:
    """A user's effective limits: a rate per kind of request and their queue quota; `overridden` names the fields
    an admin set."""

    image_jobs: str
    chat_messages: str
    uploads: str
    reads: str
    queue_quota: int
    overridden: frozenset[str] = field(default_factory=frozenset)
    # The account is disabled (or was removed): the gateway refuses its requests, whatever its login.
    disabled: bool = False

    def rate(self, kind: str) -> str:
        """The rate for one of the gateway's kinds (image, chat, upload, read)."""
        return str(getattr(self, RATE_FIELDS[kind]))

    def item(self, kind: str) -> RateLimitItem:
        """The rate for `kind` as the `limits` item slowapi's limiter hits."""
        return parse_rate(self.rate(kind))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, with the overridden fields listed."""
        return {"image_jobs": self.image_jobs, "chat_messages": self.chat_messages, "uploads": self.uploads,
                "reads": self.reads, "queue_quota": self.queue_quota, "overridden": sorted(self.overridden)}


def looser(own: RateLimitItem, setting: RateLimitItem) -> RateLimitItem:
    """The rate that allows more on average (`own` on a tie). The admin panel's requests count against the looser of an
    admin's own read limit and the setting's: no limit an admin sets can lock an admin out of the panel, the place
    to undo it (docs/admin.md)."""
    return own if own.amount / own.get_expiry() >= setting.amount / setting.get_expiry() else setting


OVERRIDABLE = ("image_jobs", "chat_messages", "uploads", "reads", "queue_quota")


class UserLimits:
    """Resolves and changes per-user limits over `defaults` (the settings')."""

    def __init__(self, defaults: Limits, generations: Generations | None = None, recheck_s: float = RECHECK_S,
                 max_age_s: float = MAX_AGE_S, clock: Callable[[], float] = time.monotonic) -> None:
        for name in RATE_FIELDS.values():
            parse_rate(getattr(defaults, name))  # a bad setting fails at start, not at the first request
        self.defaults = defaults
        self.generations = generations or Generations()
        self.recheck_s = recheck_s
        self.clock = clock
        self._cache: TTLCache[str, Limits] = TTLCache(MAX_CACHED_USERS, max_age_s, timer=clock)
        self._lock = threading.Lock()
        self._seen = -1  # the generation the cache was filled under
        self._epoch = 0  # counts the cache's clearings
        self._checked_at: float | None = None

    def use_generations(self, generations: Generations) -> None:
        """Hear of changes through `generations` (the replicas' shared state) from now on."""
        with self._lock:
            self.generations = generations
            self._clear()
            self._checked_at = None

    def effective(self, user: str | None) -> Limits:
        """The limits that apply to `user` (the defaults for anonymous and single-user requests)."""
        if not user:
            return self.defaults
        self._recheck()
        with self._lock:
            cached = self._cache.get(user)
            epoch = self._epoch
        if cached is not None:
            return cached
        account = Account.get_or_none(Account.name == user)
        row = None if account is None else UserLimit.get_or_none(UserLimit.account == account)
        limits = self._merge(row)
        if account is None or account.disabled:
            limits = replace(limits, disabled=True)
        with self._lock:
            if epoch == self._epoch:  # else a change came while this was read: the next call reads it again
                self._cache[user] = limits
        return limits

    def _recheck(self) -> None:
        """Drop the cache when another replica (or this one) changed limits since it was filled."""
        now = self.clock()
        with self._lock:
            if self._checked_at is not None and now - self._checked_at < self.recheck_s:
                return
            self._checked_at = now
        try:
            generation = self.generations.read(GENERATION)
        except UNAVAILABLE:
            log.warning("Redis is unreachable: per-user limits stay as cached until it answers")
            return
        with self._lock:
            if generation != self._seen:
                self._clear()
                self._seen = generation

    def _merge(self, row: UserLimit | None) -> Limits:
        if row is None:
            return self.defaults
        changes = {name: getattr(row, name) for name in OVERRIDABLE if getattr(row, name) is not None}
        return replace(self.defaults, **changes, overridden=frozenset(changes))

    def overrides(self) -> list[dict[str, Any]]:
        """Every user with overrides: their effective limits, who changed them last and when."""
        rows = UserLimit.select(UserLimit, Account.name).join(Account).order_by(Account.name)
        return [{"user": row.account.name, **self._merge(row).as_dict(), "updated_by": row.updated_by,
                 "updated_at": row.updated_at.isoformat()} for row in rows]

    def set(self, user: str, by: str, **changes: Any) -> Limits:
        """Override some of `user`'s limits (a value of None returns that field to the default); LimitsError for an
        unknown user, field or value, and then nothing changes."""
        values = self._checked(changes)
        try:
            self._store(user, by, values)
        except IntegrityError:  # another replica added this user's first overrides meanwhile: change those
            self._store(user, by, values)
        self.changed()
        return self.effective(user)

    @staticmethod
    def _store(user: str, by: str, values: dict[str, Any]) -> None:
        with database.atomic():
            account = Account.get_or_none(Account.name == user)
            if account is None:
                raise LimitsError(f"no user {user!r}.")
            row = for_update(UserLimit.select().where(UserLimit.account == account)).first()
            if row is None:
                row = UserLimit(account=account)
            for name, value in values.items():
                setattr(row, name, value)
            row.updated_at, row.updated_by = utcnow(), by
            if all(getattr(row, name) is None for name in OVERRIDABLE):
                if row.id is not None:
                    row.delete_instance()
            else:
                row.save()

    def clear(self, user: str) -> bool:
        """Return `user` to the defaults; False when they had no overrides."""
        removed = UserLimit.delete().where(UserLimit.account.in_(
            Account.select(Account.id).where(Account.name == user))).execute()
        if removed:
            self.changed()
        return bool(removed)

    def changed(self) -> None:
        """Tell every replica's cache (this one's at once) that a user's limits or account changed (disabled,
        enabled, removed)."""
        self.generations.bump(GENERATION)
        with self._lock:
            self._clear()
            self._checked_at = None

    def _clear(self) -> None:
        """Forget every cached user (lock held)."""
        self._cache.clear()
        self._epoch += 1

    @staticmethod
    def _checked(changes: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(changes) - set(OVERRIDABLE))
        if unknown:
            raise LimitsError(f"unknown limit {unknown[0]!r}: the limits are {', '.join(OVERRIDABLE)}.")
        if not changes:
            raise LimitsError(f"nothing to change: give one or more of {', '.join(OVERRIDABLE)}.")
        values: dict[str, Any] = {}
        for name, value in changes.items():
            if value is None:
                values[name] = None
            elif name == "queue_quota":
                if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_QUEUE_QUOTA:
                    raise LimitsError(f"queue_quota must be a whole number from 1 to {MAX_QUEUE_QUOTA}, got {value!r}.")
                values[name] = value
            else:
                if not isinstance(value, str):
                    raise LimitsError(f"{name} must be a rate such as 10/minute, got {value!r}.")
                parse_rate(value.strip())
                values[name] = value.strip()
        return values
