"""A background thread that runs one piece of upkeep every so often until stopped."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class Periodic:
    """Call `work()` every `interval_s` in a daemon thread named `name`; an error is logged and the next round
    runs (upkeep must outlive a hiccup). The first round comes after `first_s` (default: one interval)."""

    def __init__(self, name: str, interval_s: float, work: Callable[[], Any], first_s: float | None = None) -> None:
        self.name = name
        self.interval_s = interval_s
        self.first_s = interval_s if first_s is None else first_s
        self.work = work
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (once)."""
        if self._thread is not None:
            return

        def loop() -> None:
            wait = self.first_s
            while not self._stop.wait(wait):
                wait = self.interval_s
                try:
                    self.work()
                except Exception:
                    log.exception("%s failed", self.name)

        self._thread = threading.Thread(target=loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the thread, waiting for a round under way."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + 5)
            self._thread = None
