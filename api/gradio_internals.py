"""The one door to Gradio's private attributes (its queue and its login sessions), checked at start-up.

Gradio has no public API for the queue's contents or for who owns a login cookie, yet the busy answer, the
Stop guard, the per-user quota and cookie logins need them. Every such access lives here, and `check` runs
before the server starts: a Gradio upgrade that renames one of them stops Atelier with a message naming it,
instead of a quota that silently turns off or a 500 on the first request.
"""

from __future__ import annotations

from typing import Any

# The attributes used below, by owner; `check` proves each exists on this Gradio.
QUEUE_ATTRIBUTES = ("sleep_when_free", "event_ids_to_events", "event_queue_per_concurrency_id", "active_jobs",
                    "__len__")
EVENT_QUEUE_ATTRIBUTES = ("queue",)
EVENT_ATTRIBUTES = ("session_hash", "username")
APP_ATTRIBUTES = ("tokens", "cookie_id")


def check(blocks: Any, gradio_app: Any) -> None:
    """Refuse to start (SystemExit naming the attribute and the Gradio version) if any private attribute used
    here is gone; `blocks` must be queued and mounted, `gradio_app` is the mounted Gradio App."""
    from gradio.queueing import Event, EventQueue

    queue = _require(blocks, "_queue", "Blocks")
    for name in QUEUE_ATTRIBUTES:
        _require(queue, name, "Queue")
    for name in APP_ATTRIBUTES:
        _require(gradio_app, name, "App")
    # Events exist only while requests wait, so a throw-away one shows what this Gradio's events carry.
    for name in EVENT_QUEUE_ATTRIBUTES:
        _require(_sample(EventQueue, "atelier-check", 1), name, "EventQueue")
    fn = next(iter(blocks.fns.values()), None)
    if fn is not None:
        event = _sample(Event, None, fn, None, "atelier-check")
        for name in EVENT_ATTRIBUTES:
            _require(event, name, "Event")


def _refuse(what: str) -> SystemExit:
    import gradio

    return SystemExit(f"Atelier cannot run on Gradio {gradio.__version__}: it relies on Gradio's private {what}, "
                      "which this version does not have. Install the Gradio version pinned in requirements.txt.")


def _require(owner: Any, name: str, kind: str) -> Any:
    try:
        return getattr(owner, name)
    except AttributeError:
        raise _refuse(f"attribute {kind}.{name}") from None


def _sample(cls: type, *args: Any) -> Any:
    try:
        return cls(*args)
    except TypeError as err:
        raise _refuse(f"class {cls.__name__} as Atelier builds it ({err})") from None


def set_idle_poll(blocks: Any, seconds: float) -> None:
    """How long Gradio's queue loop sleeps between looks while it has nothing to do."""
    blocks._queue.sleep_when_free = seconds


def queue_size(blocks: Any) -> int:
    """Events waiting in Gradio's queue (not those running)."""
    return len(blocks._queue)


def session_of_event(blocks: Any, event_id: str) -> str | None:
    """The session hash an event waiting or running belongs to; None when there is no such event."""
    event = blocks._queue.event_ids_to_events.get(event_id)
    return None if event is None else event.session_hash


def jobs_of(blocks: Any, user: str) -> int:
    """A user's events waiting in Gradio's queue or running now."""
    queue = blocks._queue
    waiting = [e for q in queue.event_queue_per_concurrency_id.values() for e in q.queue]
    running = [e for job in queue.active_jobs if job for e in job]
    return sum(1 for e in waiting + running if (e.username or "") == user)  # anonymous: the one user ""


def cookie_names(gradio_app: Any) -> tuple[str, str]:
    """The names of the two cookies Gradio's /login sets (secure and not), which carry a session token."""
    cookie_id = gradio_app.cookie_id
    return f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}"


def user_of_token(gradio_app: Any, token: str) -> str | None:
    """Who logged in with this session token, or None for an unknown one."""
    return gradio_app.tokens.get(token)
