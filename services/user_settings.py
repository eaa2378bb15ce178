"""A user's own settings, by key, stored as JSON (storage.models.UserSetting): each key has a checker, so that a
client, the UIs and an imported archive can only store values Atelier understands."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from contracts import InvalidRequest
from storage.connections import database
from storage.models import UserSetting, utcnow

RETENTION_DAYS = "retention_days"
MAX_RETENTION_DAYS = 36_500


def _retention_days(value: Any) -> int | None:
    """None or 0 keep everything (the server's own retention still applies); else 1 to MAX_RETENTION_DAYS days."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise InvalidRequest({RETENTION_DAYS: f"{RETENTION_DAYS} must be a whole number of days, got {value!r}."})
    if not 0 <= value <= MAX_RETENTION_DAYS:
        raise InvalidRequest({RETENTION_DAYS: f"{RETENTION_DAYS} must be between 0 (keep everything) and "
                                              f"{MAX_RETENTION_DAYS}, got {value}."})
    return int(value) or None


# Every key a user may set, with the function that checks (and normalises) its value.
KNOWN: dict[str, Callable[[Any], Any]] = {RETENTION_DAYS: _retention_days}


def check(key: str, value: Any) -> Any:
    """The normalised value for `key`; InvalidRequest for an unknown key or a bad value."""
    if key not in KNOWN:
        raise InvalidRequest({"key": f"{key!r} is not a user setting (known: {', '.join(sorted(KNOWN))})."})
    return KNOWN[key](value)


class UserSettings:
    """Read and write one user's settings."""

    def get(self, user: str, key: str) -> Any:
        """The stored value, or None."""
        row = UserSetting.get_or_none((UserSetting.user == user) & (UserSetting.key == key))
        return json.loads(row.value) if row is not None else None

    def all(self, user: str) -> dict[str, Any]:
        """Every setting the user stored, by key."""
        return {row.key: json.loads(row.value)
                for row in UserSetting.select().where(UserSetting.user == user).order_by(UserSetting.key)}

    def set(self, user: str, key: str, value: Any) -> Any:
        """Store a checked value (None removes the setting); return what was stored."""
        normalised = check(key, value)
        with database.atomic():
            UserSetting.delete().where((UserSetting.user == user) & (UserSetting.key == key)).execute()
            if normalised is not None:
                UserSetting.create(user=user, key=key, value=json.dumps(normalised), updated_at=utcnow())
        return normalised

    def users_with(self, key: str) -> list[str]:
        """The users who stored `key`."""
        return [row.user for row in UserSetting.select(UserSetting.user).where(UserSetting.key == key)]
