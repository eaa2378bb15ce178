"""Whether this replica can serve (the orchestrators' readiness check, /api/health/ready): its database answers,
its Redis answers when it has one, and no model of its own has failed to load.

A model still loading, or not loaded yet, is ready: it loads on the first request. A remote model (vLLM,
AUTOMATIC1111) that failed is reported but does not make the replica unready: every replica shares that server,
and taking them all out of rotation would not bring it back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from services.model_slots import ModelSlot, ModelState
from storage.connections import database


def database_check() -> str | None:
    """None when the database answers a query; else why not."""
    try:
        database.execute_sql("SELECT 1").fetchone()
    except Exception as err:
        return f"the database does not answer: {type(err).__name__}: {err}"
    return None


def redis_check(ping: Callable[[], Any] | None) -> str | None:
    """None when there is no Redis or it answers a ping; else why not."""
    if ping is None:
        return None
    try:
        ping()
    except Exception as err:
        return f"Redis does not answer: {type(err).__name__}: {err}"
    return None


def model_check(slot: ModelSlot[Any]) -> str | None:
    """None when the slot's model is loaded or can be; else why it cannot (a local model that failed to load)."""
    status = slot.status()
    if status.state is ModelState.FAILED and not getattr(slot.backend, "remote", False):
        return f"the {slot.kind} model failed to load: {status.reason}"
    return None


def readiness(slots: Sequence[ModelSlot[Any]], redis_ping: Callable[[], Any] | None) -> tuple[bool, dict[str, Any]]:
    """(ready, each check's outcome: "ok", "not configured", a model's state, or the problem)."""
    problems = {"database": database_check(), "redis": redis_check(redis_ping)}
    models = {slot.kind: (model_check(slot), slot.status().state.value) for slot in slots}
    checks: dict[str, Any] = {name: problem or ("not configured" if name == "redis" and redis_ping is None else "ok")
                              for name, problem in problems.items()}
    checks["models"] = {kind: problem or state for kind, (problem, state) in models.items()}
    ready = not any(problems.values()) and not any(problem for problem, _ in models.values())
    return ready, checks
