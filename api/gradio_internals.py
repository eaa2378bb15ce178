"""The one door to Gradio's private attributes (its queue, its sessions, its file lists), checked at start-up.

Gradio has no public API for the queue's contents, for who owns a login cookie, or for forgetting a session, yet
the busy answer, the Stop guard, the per-user quota, cookie logins and the session janitor need them. Every such
access lives here, and `check` runs before the server starts: a Gradio upgrade that renames one of them stops
Atelier with a message naming it, instead of a quota that silently turns off or a 500 on the first request.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import importlib.abc
import importlib.machinery
import inspect
import sys
import weakref
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

from fastapi import HTTPException

from services.admission import UNAVAILABLE

# The attributes used below, by owner; `check` proves each exists on this Gradio.
QUEUE_ATTRIBUTES = ("sleep_when_free", "push", "process_events", "send_message", "event_ids_to_events",
                    "event_queue_per_concurrency_id", "active_jobs",
                    "__len__", "pending_event_ids_session", "pending_messages_per_session")
BLOCKS_ATTRIBUTES = ("state_holder", "temp_file_sets", "app", "blocks")
HOLDER_ATTRIBUTES = ("session_data", "time_last_used", "lock", "delete_state")
SESSION_ATTRIBUTES = ("config_values",)
# What SessionState.__init__ sets, and the methods that write its configs: _LeanSessionState sets and replaces them.
SESSION_STATE_FIELDS = ("blocks_config", "config_values", "state_data", "_state_ttl", "is_closed",
                        "STATE_TTL_WHEN_CLOSED")
SESSION_STATE_METHODS = ("__setitem__", "_update_config", "_update_value_in_config", "components")
EVENT_QUEUE_ATTRIBUTES = ("queue",)
EVENT_ATTRIBUTES = ("_id", "session_hash", "username", "request", "fn", "enqueue_time")
FN_ATTRIBUTES = ("_id", "api_name", "concurrency_id")
APP_ATTRIBUTES = ("tokens", "cookie_id", "state_holder", "router")
# Gradio's MCP server (gradio/mcp.py), when it runs: adapt_mcp replaces these.
MCP_ATTRIBUTES = ("_get_or_create_client", "_prepare_tool_call_args", "postprocess_output_data", "get_fn_description",
                  "tool_to_endpoint", "api_info", "mcp_server")


def check(blocks: Any, gradio_app: Any) -> None:
    """Refuse to start (SystemExit naming the attribute and the Gradio version) if any private attribute used
    here is gone; `blocks` must be queued and mounted, `gradio_app` is the mounted Gradio App."""
    from gradio.queueing import Event, EventQueue

    queue = _require(blocks, "_queue", "Blocks")
    for name in QUEUE_ATTRIBUTES:
        _require(queue, name, "Queue")
    for name in BLOCKS_ATTRIBUTES:
        _require(blocks, name, "Blocks")
    for name in HOLDER_ATTRIBUTES:
        _require(blocks.state_holder, name, "StateHolder")
    from gradio.state_holder import SessionState

    session = _sample(SessionState, blocks)
    for name in SESSION_ATTRIBUTES:
        _require(session, name, "SessionState")
    if set(vars(session)) != set(SESSION_STATE_FIELDS):  # lean_sessions() builds them itself
        raise _refuse(f"SessionState fields {sorted(vars(session))} (Atelier knows {sorted(SESSION_STATE_FIELDS)})")
    for name in SESSION_STATE_METHODS:
        _require(SessionState, name, "SessionState")
    from gradio.blocks import Blocks, postprocess_update_dict
    from gradio.components import _Keywords
    from gradio.context import LocalContext

    _require(Blocks, "postprocess_data", "Blocks")
    _require(_Keywords, "FINISHED_ITERATING", "components._Keywords")
    _require(LocalContext, "event_id", "context.LocalContext")
    if postprocess_update_dict(blocks, {"__type__": "update"}) != SKIPPED:
        raise _refuse("answer for gr.skip() (cheap_skips() sends what it sent)")
    for name in APP_ATTRIBUTES:
        _require(gradio_app, name, "App")
    import gradio.component_meta

    if _require(gradio.component_meta, STUB_WRITER, "module global gradio.component_meta") is not _no_stubs:
        raise _refuse(f"module global gradio.component_meta.{STUB_WRITER} (skip_stub_writing replaces it)")
    import gradio.queueing

    if _require(gradio.queueing, "asyncio", "module global gradio.queueing") not in (asyncio, _QUEUE_ASYNCIO):
        raise _refuse("module global gradio.queueing.asyncio (set_idle_poll replaces it)")
    # Events exist only while requests wait, so a throw-away one shows what this Gradio's events carry.
    for name in EVENT_QUEUE_ATTRIBUTES:
        _require(_sample(EventQueue, "atelier-check", 1), name, "EventQueue")
    fn = next(iter(blocks.fns.values()), None)
    if fn is not None:
        event = _sample(Event, None, fn, None, "atelier-check")
        for name in EVENT_ATTRIBUTES:
            _require(event, name, "Event")
        for name in FN_ATTRIBUTES:
            _require(fn, name, "BlockFunction")
    _cancel_route(gradio_app)
    if (mcp := getattr(blocks, "mcp_server_obj", None)) is not None:
        for name in MCP_ATTRIBUTES:
            _require(mcp, name, "GradioMCPServer")


# Gradio's function that rewrites a component's .pyi type stub each time the component's class is defined.
STUB_WRITER = "create_or_modify_pyi"


def skip_stub_writing() -> None:
    """Keep Gradio from rewriting its components' type stubs at every start. As each component class is defined,
    Gradio reads its source, parses it, renders a .pyi interface and compares it with the file in site-packages:
    an aid for editors of Gradio's own code, ~0.9 s of CPU of the ~2.5 s `import gradio` takes, on every start.
    Call before gradio is imported (the import then runs without it); later, it only spares any class still to
    come. `check` proves it took effect."""
    module = sys.modules.get("gradio.component_meta")
    if module is not None:
        if hasattr(module, STUB_WRITER):
            setattr(module, STUB_WRITER, _no_stubs)
    elif not any(isinstance(finder, _StubSkipper) for finder in sys.meta_path):
        sys.meta_path.insert(0, _StubSkipper())


def _no_stubs(*_args: Any, **_kwargs: Any) -> None:
    """Write no type stub."""


class _StubSkipper(importlib.abc.MetaPathFinder):
    """Finds gradio.component_meta as Python would, and replaces its stub writer once the module has run, before
    any component class is defined with it."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        """The ordinary spec of gradio.component_meta, its loader wrapped; None for any other module."""
        if name != "gradio.component_meta":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = _StubSkippingLoader(spec.loader)
        return spec


class _StubSkippingLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        """The wrapped loader's module."""
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        """Run the module, then replace its stub writer (a Gradio without one is left as it is: check says so)."""
        self.loader.exec_module(module)
        if hasattr(module, STUB_WRITER):
            setattr(module, STUB_WRITER, _no_stubs)


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
    """How long Gradio's queue loop sleeps between looks while it has nothing to do; a job pushed or a worker
    freed ends that sleep at once (so `seconds` only bounds what nothing announces)."""
    queue = blocks._queue
    queue.sleep_when_free = seconds
    _IDLE_SLEEPS.add(seconds)
    import gradio.queueing

    gradio.queueing.asyncio = _QUEUE_ASYNCIO  # type: ignore[attr-defined]
    push, process_events = queue.push, queue.process_events

    async def push_and_wake(*args: Any, **kwargs: Any) -> Any:
        try:
            return await push(*args, **kwargs)
        finally:
            _queue_wake().set()

    async def process_and_wake(*args: Any, **kwargs: Any) -> Any:
        try:
            return await process_events(*args, **kwargs)
        finally:  # its worker and concurrency slot are free again (also when cancelled)
            _queue_wake().set()

    queue.push, queue.process_events = push_and_wake, process_and_wake


# The idle sleeps set above, and per event loop the event that cuts them short (several apps may share a process).
_IDLE_SLEEPS: set[float] = set()
_WAKES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Event] = weakref.WeakKeyDictionary()


def _queue_wake() -> asyncio.Event:
    loop = asyncio.get_running_loop()
    if (wake := _WAKES.get(loop)) is None:
        wake = _WAKES[loop] = asyncio.Event()
    return wake


class _WakeableAsyncio:
    """gradio.queueing's `asyncio`: the module itself, except that the queue loop's idle sleep (a duration given
    to set_idle_poll) ends early when woken. Gradio's loop polls (1 ms by default); each wake takes the GIL from
    the thread driving the model, while a long poll delays each job's start by up to the poll."""

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    async def sleep(self, delay: float, result: Any = None) -> Any:
        """asyncio.sleep, cut short by a wake when `delay` is an idle sleep of the queue loop."""
        if delay not in _IDLE_SLEEPS:
            return await asyncio.sleep(delay, result)
        wake = _queue_wake()
        if not wake.is_set():
            # Not asyncio.wait_for: on Python 3.11 it swallows a cancel that lands as the wake comes (CPython #86296).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await wake.wait()
        wake.clear()  # the loop looks again now; a wake while it works makes its next sleep return at once
        return result


_QUEUE_ASYNCIO = _WakeableAsyncio()


def tell_place(ahead: int, waiting: int, eta_s: float | None) -> None:
    """Send the client of the event whose handler is running now a queue estimation (its place `ahead`, the line's
    size, the ETA), as Gradio sends one while an event waits in its own queue: the Gradio UI's status tracker,
    the React client and gradio_client all show it. Called from the handler (Gradio's context knows its event);
    elsewhere it does nothing."""
    from gradio.context import LocalContext
    from gradio.server_messages import EstimationMessage

    blocks, event_id = LocalContext.blocks.get(None), LocalContext.event_id.get(None)
    queue = getattr(blocks, "_queue", None)
    event = None if queue is None or event_id is None else queue.event_ids_to_events.get(event_id)
    if event is not None:
        queue.send_message(event, EstimationMessage(rank=ahead, queue_size=waiting, rank_eta=eta_s))


def queue_size(blocks: Any) -> int:
    """Events waiting in Gradio's queue (not those running)."""
    return len(blocks._queue)


def session_of_event(blocks: Any, event_id: str) -> str | None:
    """The session hash an event waiting or running belongs to; None when there is no such event."""
    event = blocks._queue.event_ids_to_events.get(event_id)
    return None if event is None else event.session_hash


def jobs_by_user(blocks: Any, ticket_key: str) -> dict[str, set[str]]:
    """Each user's events waiting in Gradio's queue or running now, by id: the quota ticket its queue/join
    request carries in request.state[`ticket_key`], else Gradio's event id."""
    jobs: dict[str, set[str]] = {}
    for event in _events(blocks):
        state = getattr(event.request, "scope", {}).get("state") or {}
        # Anonymous events belong to the one user "".
        jobs.setdefault(event.username or "", set()).add(str(state.get(ticket_key) or event._id))
    return jobs


def queue_events(blocks: Any) -> list[dict[str, Any]]:
    """Every event waiting in Gradio's queue or running, oldest first: its id, user, API name, concurrency group,
    whether it runs, and the seconds since it joined the queue."""
    import time

    queue = blocks._queue
    now = time.monotonic()
    waiting = [e for q in queue.event_queue_per_concurrency_id.values() for e in q.queue]
    running = [e for job in queue.active_jobs if job for e in job]
    found = [{"id": e._id, "user": e.username or "", "api_name": e.fn.api_name or "",
              "concurrency": e.fn.concurrency_id or "", "status": status,
              "seconds": round(max(0.0, now - e.enqueue_time), 3)}
             for status, events in (("running", running), ("waiting", waiting)) for e in events]
    return sorted(found, key=lambda e: -e["seconds"])


async def cancel_event(gradio_app: Any, blocks: Any, event_id: str) -> bool:
    """Stop an event waiting or running, as its own user's Stop does (Gradio's /cancel route, called directly);
    False when there is no such event."""
    from gradio.data_classes import CancelBody

    event = blocks._queue.event_ids_to_events.get(event_id)
    if event is None:
        event = next((e for job in blocks._queue.active_jobs if job for e in job if e._id == event_id), None)
    if event is None:
        return False
    await _cancel_route(gradio_app)(CancelBody(session_hash=event.session_hash, fn_index=event.fn._id,
                                               event_id=event_id))
    return True


def current_event_id() -> str:
    """The id of the Gradio event whose handler is running in this context ("" outside one)."""
    from gradio.context import LocalContext

    return LocalContext.event_id.get(None) or ""


def _cancel_route(gradio_app: Any) -> Callable[..., Any]:
    """The endpoint of Gradio's POST /gradio_api/cancel (FastAPI keeps an included router's routes on it)."""
    routes = list(gradio_app.router.routes)
    while routes:
        route = routes.pop()
        if getattr(route, "path", "").endswith("/cancel") and "POST" in (getattr(route, "methods", None) or ()):
            return route.endpoint  # type: ignore[no-any-return]
        inner = getattr(route, "original_router", None) or getattr(route, "router", None)
        routes.extend(getattr(inner, "routes", None) or ())
    raise _refuse("route POST /gradio_api/cancel")


def drop_logins(gradio_app: Any, user: str) -> int:
    """End every login session of `user` (Gradio's tokens; on Redis, every replica's); how many there were."""
    tokens = gradio_app.tokens
    mine = [token for token in list(tokens.keys()) if tokens.get(token) == user]
    for token in mine:
        with contextlib.suppress(KeyError):  # gone meanwhile (a logout, another replica)
            del tokens[token]
    return len(mine)


def _events(blocks: Any) -> list[Any]:
    """The events waiting in Gradio's queue and those running."""
    queue = blocks._queue
    waiting = [e for q in queue.event_queue_per_concurrency_id.values() for e in q.queue]
    return waiting + [e for job in queue.active_jobs if job for e in job]


def share_login_tokens(gradio_app: Any, tokens: MutableMapping[str, str], agree: Callable[[str], str]) -> None:
    """Keep the login tokens in `tokens` (token -> user, shared by every replica) under the cookie name every
    replica agrees on (`agree(own cookie id)` gives it). Gradio uses `app.tokens` only as a mapping (get, [],
    in, keys, del: routes.py's login, logout and get_current_user) and names its cookies after `app.cookie_id`;
    it sets both when the app is mounted, so this runs after mount_gradio_app."""
    gradio_app.tokens = _AnswerWhenUnreachable(tokens)
    gradio_app.cookie_id = agree(gradio_app.cookie_id)


LOGIN_UNAVAILABLE = "Atelier cannot reach its shared state (Redis) to keep your login. Try again shortly."


class _AnswerWhenUnreachable(MutableMapping[str, str]):
    """The shared tokens as Gradio's routes use them, except that an unreachable store becomes a 503 with a
    message: the gateway's throttle may pass just before Redis goes, and Gradio's /login and /logout would then
    answer its error as a 500. Reading a token needs no help: the store answers "unknown" (a login page)."""

    def __init__(self, tokens: MutableMapping[str, str]) -> None:
        self.tokens = tokens

    def __getitem__(self, token: str) -> str:
        return self.tokens[token]

    def __setitem__(self, token: str, user: str) -> None:
        with _unreachable_is_503():
            self.tokens[token] = user

    def __delitem__(self, token: str) -> None:
        with _unreachable_is_503():
            del self.tokens[token]

    def __iter__(self) -> Iterator[str]:
        with _unreachable_is_503():
            return iter(list(self.tokens))  # read now, so that a failure surfaces here and not mid-loop

    def __len__(self) -> int:
        with _unreachable_is_503():
            return len(self.tokens)


@contextlib.contextmanager
def _unreachable_is_503() -> Iterator[None]:
    try:
        yield
    except UNAVAILABLE:
        raise HTTPException(503, LOGIN_UNAVAILABLE, headers={"retry-after": "10"}) from None


def cookie_names(gradio_app: Any) -> tuple[str, str]:
    """The names of the two cookies Gradio's /login sets (secure and not), which carry a session token."""
    cookie_id = gradio_app.cookie_id
    return f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}"


def user_of_token(gradio_app: Any, token: str) -> str | None:
    """Who logged in with this session token, or None for an unknown one."""
    return gradio_app.tokens.get(token)


def validate_through(blocks: Any, gradio_app: Any) -> None:
    """Run validators through the mounted App: mount_gradio_app leaves `blocks.app` on the App that
    `blocks.queue()` made, and each job then left a SessionState in that unserved App, which nothing freed."""
    blocks.app = gradio_app


def session_of_call(blocks: Any, event_id: str) -> str:
    """The session whose messages GET /call/{api_name}/{event_id} streams, found as Gradio's route finds it: the
    event's session while it waits or runs, else the session still holding its id, else the id itself (an event
    started without a session hash has its own id as one)."""
    queue = blocks._queue
    event = queue.event_ids_to_events.get(event_id)
    if event is not None:
        return str(event.session_hash)
    return next((s for s, ids in list(queue.pending_event_ids_session.items()) if event_id in ids), event_id)


def held_ids(blocks: Any) -> set[str]:
    """Every session hash and event id Gradio holds something for: session state, a message queue, an event
    waiting, running or with its result undelivered."""
    queue = blocks._queue
    ids = set(blocks.state_holder.session_data) | set(queue.pending_messages_per_session)
    for session, events in list(queue.pending_event_ids_session.items()):
        ids.add(session)
        ids.update(events)
    return ids | set(queue.event_ids_to_events)


def holds(blocks: Any, key: str) -> bool:
    """Whether Gradio holds anything for this session hash or event id (held_ids, without building the set)."""
    queue = blocks._queue
    return (key in blocks.state_holder.session_data or key in queue.pending_messages_per_session
            or key in queue.pending_event_ids_session or key in queue.event_ids_to_events
            or any(key in ids for ids in list(queue.pending_event_ids_session.values())))


def guard_session_state(gradio_app: Any, check: Callable[[str], None]) -> None:
    """Call `check(session hash)` before each of Gradio's routes reads or creates a session's state through the
    App (component_server, deep_link): it raises to refuse. The queue reaches the same states through the
    Blocks, unguarded (the gateway checked the session when the job joined)."""
    gradio_app.state_holder = _GuardedStates(gradio_app.state_holder, check)


class _GuardedStates:
    """Gradio's StateHolder as the App's routes use it (`holder[session]`, `session in holder`), checked first;
    everything else passes to the real one."""

    def __init__(self, holder: Any, check: Callable[[str], None]) -> None:
        self._holder = holder
        self._check = check

    def __getitem__(self, session: str) -> Any:
        self._check(session)
        return self._holder[session]

    def __contains__(self, session: str) -> bool:
        self._check(session)
        return session in self._holder

    def __getattr__(self, name: str) -> Any:
        return getattr(self._holder, name)


def kept_files(blocks: Any) -> set[str]:
    """The files Gradio keeps in its cache for good (components' default values): the same for every user."""
    return {str(p) for block in blocks.blocks.values() for p in getattr(block, "keep_in_cache", ())}


def session_has_jobs(blocks: Any, session: str) -> bool:
    """Whether an event of the session waits or runs."""
    return bool(blocks._queue.pending_event_ids_session.get(session))


def known_sessions(blocks: Any) -> set[str]:
    """The sessions Gradio holds state for."""
    return set(blocks.state_holder.session_data)


def session_last_used(blocks: Any, session: str) -> float | None:
    """When the session last ran an event (a Unix time), or None when Gradio has no record of it."""
    used = blocks.state_holder.time_last_used.get(session)
    return used.timestamp() if used else None


def forget_session(blocks: Any, session: str) -> None:
    """Drop what Gradio keeps for a session: its state (running gr.State delete callbacks, as Gradio's own
    expiry does), its message queue, and the empty set of event ids it leaves behind every session."""
    holder = blocks.state_holder
    holder.delete_state(session)
    with holder.lock:
        holder.session_data.pop(session, None)
        holder.time_last_used.pop(session, None)
    blocks._queue.pending_messages_per_session.pop(session, None)
    blocks._queue.pending_event_ids_session.pop(session, None)


def held_values(blocks: Any) -> Iterator[Any]:
    """Everything the held sessions show (each component's last value or config), and the paths Gradio keeps
    in its cache for good (components' default files)."""
    yield from ({"path": p} for p in kept_files(blocks))
    for state in list(blocks.state_holder.session_data.values()):
        yield from list(state.config_values.values())


def forget_files(blocks: Any, removed: set[str]) -> None:
    """Drop deleted files from Gradio's own lists of the files it made, which otherwise only grow."""
    for temp_set in blocks.temp_file_sets:
        temp_set -= removed


def add_login(gradio_app: Any, token: str, user: str) -> None:
    """Make `token` a login of `user` (what Gradio's /login records), until remove_login."""
    gradio_app.tokens[token] = user


def remove_login(gradio_app: Any, token: str) -> None:
    """Forget a login token made by add_login."""
    with contextlib.suppress(KeyError, HTTPException):
        del gradio_app.tokens[token]


# The endpoint of the MCP tool call in progress (set where Gradio prepares its arguments, read where it shapes the
# result: both in the one task that runs the call).
_MCP_ENDPOINT: contextvars.ContextVar[str | None] = contextvars.ContextVar("atelier_mcp_endpoint", default=None)


def adapt_mcp(blocks: Any, *, client: Callable[[Any], Any], tools: Callable[[dict[str, str]], dict[str, str]],
              describe: Callable[[str, dict[str, str], list[str]], dict[str, str]],
              outputs: Callable[[str | None, list[Any]], list[Any]],
              api_info: Callable[[dict[str, Any]], dict[str, Any]]) -> bool:
    """Adapt Gradio's MCP server of `blocks` (False when it has none): `client(mcp_request)` gives the gradio_client a
    queued tool call runs through (Gradio keeps one for everybody), `tools(tool -> endpoint)` renames the tools,
    `describe(docstring, parameters, names)` completes the parameter descriptions, `outputs(endpoint, data)` shapes a
    tool's result before Gradio turns it into MCP content, `api_info(info)` amends the API description the tools'
    schemas and arguments are made from (the MCP server's own copy)."""
    server = getattr(blocks, "mcp_server_obj", None)
    if server is None:
        return False
    server.api_info = api_info(server.api_info)
    server.tool_to_endpoint = tools(server.tool_to_endpoint)
    original_describe, prepare, postprocess = (server.get_fn_description, server._prepare_tool_call_args,
                                               server.postprocess_output_data)

    def described(block_fn: Any, tool_name: str) -> tuple[str, dict[str, str]]:
        description, parameters = original_describe(block_fn, tool_name)
        endpoint = server.tool_to_endpoint.get(tool_name, "")
        names = [p["parameter_name"] for p in server.api_info["named_endpoints"].get(endpoint, {}).get(
            "parameters", [])]
        return description, describe(inspect.getdoc(block_fn.fn) or "", parameters, names)

    def prepared(name: str, arguments: dict[str, Any]) -> Any:
        found = prepare(name, arguments)
        _MCP_ENDPOINT.set(found[0])
        return found

    server.get_fn_description = described
    server._prepare_tool_call_args = prepared
    server.postprocess_output_data = lambda data, root_url: postprocess(outputs(_MCP_ENDPOINT.get(), list(data)),
                                                                        root_url)
    server._get_or_create_client = lambda: client(server.mcp_server.request_context.request)
    return True


def editor_ids(blocks: Any) -> set[int]:
    """The component ids of the image editors in the app (the only components with a server function it uses)."""
    import gradio as gr

    return {block_id for block_id, block in blocks.blocks.items() if isinstance(block, gr.ImageEditor)}


# What Gradio sends for an output a handler skipped (gr.skip()): an update that changes nothing.
SKIPPED = {"__type__": "update"}


def cheap_skips(blocks: Any) -> None:
    """Let an output skipped with gr.skip() cost nothing. Gradio treats a skip as an update of the component's
    properties: it builds a new component from the old one's arguments, keeps it in the session's state and
    computes its config (its API schema too: ~2 ms for a Gallery), on the event loop, for every skipped output of
    every message; the Image tab's stream skips two or three outputs a message. The update carries no property, so
    the session's copy is the component it copied: this sends the same empty update and keeps nothing."""
    from gradio.components import _Keywords

    postprocess = blocks.postprocess_data

    async def postprocess_skipping(block_fn: Any, predictions: Any, state: Any) -> Any:
        skipped = _bare_skips(block_fn, predictions)
        if not skipped:
            return await postprocess(block_fn, predictions, state)
        # Gradio passes an output marked FINISHED_ITERATING through untouched (None), with no state kept.
        values = [_Keywords.FINISHED_ITERATING if i in skipped else value for i, value in enumerate(predictions)]
        output = await postprocess(block_fn, values, state)
        return [dict(SKIPPED) if i in skipped else value for i, value in enumerate(output)]

    blocks.postprocess_data = postprocess_skipping


def _bare_skips(block_fn: Any, predictions: Any) -> set[int]:
    """Positions of the outputs skipped with a bare gr.skip() in a handler's list of several outputs."""
    if block_fn.batch or len(block_fn.outputs) < 2 or not isinstance(predictions, list | tuple):
        return set()
    return {i for i, value in enumerate(predictions) if isinstance(value, dict) and value == SKIPPED}


def lean_sessions(blocks: Any) -> None:
    """Sessions that hold what they changed, not a copy of the whole app. Gradio's SessionState builds, for every
    session, the config of every component (their API schemas included): ~370 KiB and ~60 ms on the event loop
    for Atelier's 240 components, for each browser tab and each gradio_client script, held for the grace period.
    Those configs serve only a deep link, and what a session changed (its gr.State values, its updated components)
    is kept apart from them; a _LeanSessionState keeps that and each output's last value, and builds the configs
    when a deep link asks for them."""
    holder = blocks.state_holder
    holder.__class__ = _lean_holder_class()


def _lean_holder_class() -> type:
    global _LEAN_HOLDER
    if _LEAN_HOLDER is None:
        from gradio.state_holder import StateHolder

        class LeanStateHolder(StateHolder):
            """Gradio's StateHolder, whose new sessions are _LeanSessionStates."""

            def __getitem__(self, session_id: str) -> Any:
                if session_id not in self.session_data:
                    self.session_data[session_id] = _lean_session_class()(self.blocks)
                return super().__getitem__(session_id)

        _LEAN_HOLDER = LeanStateHolder
    return _LEAN_HOLDER


def _lean_session_class() -> type:
    global _LEAN_SESSION
    if _LEAN_SESSION is None:
        _LEAN_SESSION = _build_lean_session_class()
    return _LEAN_SESSION


_LEAN_HOLDER: type | None = None
_LEAN_SESSION: type | None = None


def _build_lean_session_class() -> type:
    import copy
    import datetime
    import os

    from gradio.components import State
    from gradio.state_holder import SessionState

    class LeanSessionState(SessionState):
        """A SessionState without the config of every component: `config_values` holds only the last value of
        each output this session was sent ({"props": {"value": ...}}, which the janitor reads for the files a
        session shows), and `components` builds full configs when a deep link asks."""

        def __init__(self, blocks: Any) -> None:  # SessionState's, less the configs (check() compares the fields)
            self.blocks_config = copy.copy(blocks.default_config)
            # The session's components and events are the app's until it changes one (copied then, as Gradio
            # copies them up front: two dicts of 240 and 64 entries, ~11 KiB a session).
            self.blocks_config.blocks = CopyOnWrite(blocks.default_config.blocks)
            self.blocks_config.fns = CopyOnWrite(blocks.default_config.fns)
            self.config_values: dict[int, dict[str, Any]] = {}
            self.state_data: dict[int, Any] = {}
            self._state_ttl: dict[int, Any] = {}
            self.is_closed = False
            self.STATE_TTL_WHEN_CLOSED = 1 if os.getenv("GRADIO_IS_E2E_TEST", None) else 3600
            self._root_blocks = blocks.default_config.blocks  # the app's own, shared

        def __setitem__(self, key: int, value: Any) -> None:
            block = self.blocks_config.blocks.get(key)
            if isinstance(block, State):
                self._state_ttl[key] = (block.time_to_live, datetime.datetime.now())
                self.state_data[key] = value
            else:
                self.blocks_config.blocks[key] = value  # the session's own copy of an updated component

        def _update_config(self, key: int) -> None:
            """Nothing to do: configs are built when asked for (components)."""

        def _update_value_in_config(self, key: int, value: Any) -> None:
            self.config_values[key] = {"props": {"value": value}}

        @property
        def components(self) -> Iterator[dict[str, Any]]:
            """Every component's config as this session has it (its own copies and last values): a deep link."""
            config = self.blocks_config
            for key, block in list(config.blocks.items()):
                if key not in self._root_blocks:
                    continue
                built = config.config_for_block(key, [], block)
                if key in self.config_values and "props" in built:
                    built["props"]["value"] = self.config_values[key]["props"]["value"]
                if built:
                    yield built

    return LeanSessionState


class CopyOnWrite(MutableMapping[Any, Any]):
    """A dict's copy that reads the original until its first change, and copies it then: what a session would
    copy up front and almost never changes."""

    __slots__ = ("_data", "_own")

    def __init__(self, original: dict[Any, Any]) -> None:
        self._data = original
        self._own = False

    def _mine(self) -> dict[Any, Any]:
        if not self._own:
            self._data, self._own = dict(self._data), True
        return self._data

    def __getitem__(self, key: Any) -> Any:
        return self._data[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self._mine()[key] = value

    def __delitem__(self, key: Any) -> None:
        del self._mine()[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __copy__(self) -> CopyOnWrite:
        return CopyOnWrite(self._data) if not self._own else CopyOnWrite(dict(self._data))

