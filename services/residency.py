"""One GPU, two models: what happens to a model that sits idle (kept, offloaded to CPU RAM, or unloaded)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.model_slots import ModelSlot
from services.periodic import Periodic


class Residency:
    """Applies the idle policy to every slot once it has been idle for `keep_alive_s`."""

    def __init__(self, slots: Sequence[ModelSlot[Any]], policy: str, keep_alive_s: float,
                 interval_s: float = 5.0) -> None:
        if policy not in ("resident", "offload", "unload"):
            raise ValueError(f"idle policy must be resident, offload or unload, got {policy!r}")
        self.slots = list(slots)
        self.policy = policy
        self.keep_alive_s = keep_alive_s
        self.interval_s = interval_s
        self._periodic = Periodic("residency", interval_s, self.sweep)

    def sweep(self) -> list[str]:
        """Release every slot idle past the keep-alive; return the kinds released."""
        if self.policy == "resident":
            return []
        released = []
        for slot in self.slots:
            idle = slot.idle_seconds()  # None unless loaded: an unbuilt backend is not built to ask it
            if idle is None or slot.backend.remote:
                continue  # a remote server holds its own memory: nothing here to offload or free
            if idle >= self.keep_alive_s and slot.release(self.policy):
                released.append(slot.kind)
        return released

    def start(self) -> None:
        """Sweep in a background thread until stop()."""
        if self.policy != "resident":
            self._periodic.start()

    def stop(self) -> None:
        """End the background sweeper."""
        self._periodic.stop()

    def describe(self) -> dict[str, Any]:
        """The policy for /api/health."""
        return {"idle_policy": self.policy, "keep_alive_s": self.keep_alive_s}
