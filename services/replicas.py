"""Work left by a replica that died and never came back: found by a periodic sweep and recorded as interrupted."""

from __future__ import annotations

import logging
from typing import Any

from peewee import Database

from services.chat import ChatService
from services.images import ImageService, running_replicas
from services.periodic import Periodic
from storage.connections import is_postgres
from storage.db import recover_gone_replicas

log = logging.getLogger(__name__)


class ReplicaWatch:
    """Every `interval_s`, recover the unfinished image jobs and replies of replicas whose process is gone.

    A replica that restarts recovers its own work, and one that starts alone recovers everyone's; this covers a
    replica that never comes back while others run. PostgreSQL tells: a running replica holds a lock on its name
    (storage.db.join_replicas), which its connection's end releases. On SQLite there is one process, and nothing
    to sweep."""

    def __init__(self, db: Database, images: ImageService, chat: ChatService, interval_s: float) -> None:
        self.db = db
        self.images = images
        self.chat = chat
        self.interval_s = interval_s
        self.recovered: dict[str, int] = {}  # per gone replica, what the sweeps recorded as interrupted
        self._periodic = Periodic("replica-watch", interval_s, self.sweep)

    def sweep(self) -> dict[str, int]:
        """Recover the work of every gone replica now; return {replica: jobs and replies recorded as interrupted}."""
        names = {name for name in running_replicas() | self.chat.drafting_replicas() if name}
        gone = recover_gone_replicas(self.db, names, self._recover)
        for name, count in gone.items():
            if count:
                log.warning("replica %s is gone: recorded %d of its unfinished jobs and replies as interrupted",
                            name, count)
                self.recovered[name] = self.recovered.get(name, 0) + count
        return gone

    def _recover(self, name: str) -> int:
        # Files stay: the temp files in this replica's store may be its own jobs', being written.
        return self.images.recover(only_replica=name, files=False) + self.chat.recover(only_replica=name)

    def start(self) -> None:
        """Sweep in a background thread until stop(); nothing on SQLite or with an interval of 0."""
        if self.interval_s > 0 and is_postgres(self.db):
            self._periodic.start()

    def stop(self) -> None:
        """End the background sweep."""
        self._periodic.stop()

    def describe(self) -> dict[str, Any]:
        """The sweep interval and what it has recovered, for /api/health."""
        return {"sweep_s": self.interval_s if is_postgres(self.db) else None, "recovered": dict(self.recovered)}
