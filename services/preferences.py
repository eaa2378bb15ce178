"""Per-user API defaults: what AUTOMATIC1111 calls options (sd_model_checkpoint, sd_vae), kept per user, so that a
script that sets the model changes its own user's default and nobody else's."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from storage.connections import IntegrityError, database
from storage.models import UserOption, utcnow


class Preferences:
    """Reads and writes a user's saved defaults (JSON values by name)."""

    def get(self, user: str) -> dict[str, Any]:
        """Every saved default of `user`, by name."""
        return {row.name: json.loads(row.value) for row in UserOption.select().where(UserOption.user == user)}

    def set(self, user: str, values: Mapping[str, Any]) -> None:
        """Save each of `values` as `user`'s default (replacing what was there), in one transaction."""
        for attempt in (1, 2):
            try:
                with database.atomic():
                    for name, value in values.items():
                        text = json.dumps(value)
                        updated = (UserOption.update(value=text, updated_at=utcnow())
                                   .where((UserOption.user == user) & (UserOption.name == name)).execute())
                        if not updated:
                            UserOption.create(user=user, name=name, value=text)
                return
            except IntegrityError:  # the same name inserted at once by another request: the second try updates
                if attempt == 2:
                    raise
