"""Gradio's private attributes are reached through one adapter, which refuses to start without them."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import gradio
import pytest
from gradio.queueing import Event, EventQueue, Queue
from starlette.routing import Mount

from api import gradio_internals
from api.server import create_app
from settings import Settings


def bare_settings(data_dir: Path) -> Settings:
    # No model is loaded while the app is only built, so no tiny model needs to exist.
    return Settings(profile="tiny", data_dir=data_dir, warmup=False)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    app = create_app(bare_settings(tmp_path_factory.mktemp("data")))
    gradio_app = next(r.app for r in app.routes if isinstance(r, Mount) and r.path == "")
    return gradio_app.get_blocks(), gradio_app


@pytest.mark.parametrize(("kind", "owner", "name"), [
    ("Blocks", "blocks", "_queue"),
    *[("Queue", "queue", name) for name in ("sleep_when_free", "event_ids_to_events",
                                             "event_queue_per_concurrency_id", "active_jobs")],
    *[("Queue", "queue", name) for name in ("pending_event_ids_session", "pending_messages_per_session")],
    *[("Blocks", "blocks", name) for name in ("state_holder", "temp_file_sets")],
    *[("StateHolder", "holder", name) for name in ("session_data", "time_last_used")],
    *[("App", "app", name) for name in ("tokens", "cookie_id")],
])
def test_a_missing_private_attribute_stops_the_start_naming_it(monkeypatch: pytest.MonkeyPatch, built: tuple[Any, Any],
                                                                kind: str, owner: str, name: str) -> None:
    blocks, gradio_app = built
    gradio_internals.check(blocks, gradio_app)  # this Gradio has them all
    target = {"blocks": blocks, "queue": blocks._queue, "app": gradio_app, "holder": blocks.state_holder}[owner]
    monkeypatch.delattr(target, name)
    with pytest.raises(SystemExit, match=rf"Gradio {gradio.__version__}: .*private attribute {kind}\.{name},"):
        gradio_internals.check(blocks, gradio_app)


@pytest.mark.parametrize("name", gradio_internals.MCP_ATTRIBUTES)
def test_what_atelier_adapts_of_gradios_mcp_server_is_checked_too(monkeypatch: pytest.MonkeyPatch,
                                                                  built: tuple[Any, Any], name: str) -> None:
    blocks, gradio_app = built
    server = blocks.mcp_server_obj  # a loopback server without accounts serves MCP by default
    monkeypatch.delattr(server, name, raising=False)  # the adapter's own wrapper, or Gradio's instance attribute
    monkeypatch.delattr(type(server), name, raising=False)
    with pytest.raises(SystemExit, match=rf"private attribute GradioMCPServer\.{name},"):
        gradio_internals.check(blocks, gradio_app)


@pytest.mark.parametrize(("cls", "name"), [(Event, "session_hash"), (Event, "username"), (Event, "_id"),
                                           (Event, "request"), (EventQueue, "queue"), (Queue, "__len__")])
def test_what_queued_events_carry_is_checked_too(monkeypatch: pytest.MonkeyPatch, built: tuple[Any, Any],
                                                 cls: type, name: str) -> None:
    if name.startswith("__"):
        monkeypatch.delattr(cls, name)
    else:
        original = cls.__init__

        def without(self: Any, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            delattr(self, name)

        monkeypatch.setattr(cls, "__init__", without)
    with pytest.raises(SystemExit, match=rf"private attribute {cls.__name__}\.{name},"):
        gradio_internals.check(*built)


def test_a_changed_event_constructor_is_refused_too(monkeypatch: pytest.MonkeyPatch, built: tuple[Any, Any]) -> None:
    original = Event.__init__

    def with_a_new_argument(self: Any, *args: Any, priority: int) -> None:
        original(self, *args)

    monkeypatch.setattr(Event, "__init__", with_a_new_argument)
    with pytest.raises(SystemExit, match=r"private class Event as Atelier builds it \(.*priority"):
        gradio_internals.check(*built)


def test_create_app_refuses_a_gradio_whose_queue_lost_an_attribute(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    original = Queue.__init__

    def renamed(self: Queue, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.running_jobs = self.__dict__.pop("active_jobs")  # as a Gradio release might rename it

    monkeypatch.setattr(Queue, "__init__", renamed)
    with pytest.raises(SystemExit) as refused:
        create_app(bare_settings(tmp_path))
    assert str(refused.value) == (
        f"Atelier cannot run on Gradio {gradio.__version__}: it relies on Gradio's private attribute "
        "Queue.active_jobs, which this version does not have. Install the Gradio version pinned in "
        "requirements.txt.")


def test_the_adapter_reads_sessions_and_queue(built: tuple[Any, Any]) -> None:
    blocks, gradio_app = built
    gradio_app.tokens["t0k3n"] = "alice"
    assert gradio_internals.user_of_token(gradio_app, "t0k3n") == "alice"
    assert gradio_internals.user_of_token(gradio_app, "guess") is None
    assert all(gradio_app.cookie_id in name for name in gradio_internals.cookie_names(gradio_app))
    fn = next(iter(blocks.fns.values()))
    event = Event("session-1", fn, None, "alice")  # type: ignore[arg-type]
    blocks._queue.event_ids_to_events[event._id] = event
    try:
        assert gradio_internals.session_of_event(blocks, event._id) == "session-1"
        assert gradio_internals.session_of_event(blocks, "no such event") is None
    finally:
        del blocks._queue.event_ids_to_events[event._id]
    assert gradio_internals.queue_size(blocks) == 0
    gradio_internals.set_idle_poll(blocks, 0.25)
    assert blocks._queue.sleep_when_free == 0.25


def test_app_and_ui_reach_gradio_internals_only_through_the_adapter() -> None:
    root = Path(__file__).resolve().parents[2]
    private = ("._queue", "_queue\"", "sleep_when_free", "event_ids_to_events", "event_queue_per_concurrency_id",
               "active_jobs", ".tokens", ".cookie_id", "state_holder", "temp_file_sets", "pending_event_ids",
               "pending_messages", "blocks.app =", "config_values")
    offenders = [f"{path.relative_to(root)}: {word}"
                 for folder in ("api", "ui", "services") for path in (root / folder).rglob("*.py")
                 if path.name != "gradio_internals.py"
                 for word in private if word in path.read_text()]
    offenders += [f"app.py: {word}" for word in private if word in (root / "app.py").read_text()]
    assert offenders == []


def test_a_pushed_job_wakes_the_queue_loop_from_its_idle_sleep(tmp_path: Path) -> None:
    from gradio_client import Client

    from tests.server import serve

    apps: list[Any] = []
    with serve(bare_settings(tmp_path), apps) as url:
        gradio_app = next(r.app for r in apps[0].routes if isinstance(r, Mount) and r.path == "")
        # An hour between looks: only the wake on push (and on a freed worker) can start these jobs.
        gradio_internals.set_idle_poll(gradio_app.get_blocks(), 3600)
        client = Client(url, verbose=False)
        for _ in range(2):  # the second also needs the first's worker announced free
            # A bound so that a queue that is never woken fails instead of hanging (not a speed check).
            assert client.submit(limit=1, api_name="/history").result(timeout=60) is not None


def test_a_gradio_whose_stub_writer_is_not_replaced_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                               built: tuple[Any, Any]) -> None:
    import gradio.component_meta

    assert gradio.component_meta.create_or_modify_pyi is gradio_internals._no_stubs  # create_app replaced it
    monkeypatch.setattr(gradio.component_meta, "create_or_modify_pyi", lambda *args: None)  # as a Gradio would
    with pytest.raises(SystemExit, match=r"private module global gradio.component_meta.create_or_modify_pyi "):
        gradio_internals.check(*built)
    monkeypatch.delattr(gradio.component_meta, "create_or_modify_pyi")  # or a Gradio that renamed it
    with pytest.raises(SystemExit, match=r"private attribute module global gradio.component_meta.create_or_modif"):
        gradio_internals.check(*built)


@pytest.mark.parametrize("turns", range(6))
def test_the_queue_loop_stopped_as_a_push_wakes_it_stops(monkeypatch: pytest.MonkeyPatch, turns: int) -> None:
    # Gradio stops its queue loop by cancelling it. A cancel landing `turns` loop turns after a push woke the idle
    # sleep, while the sleep has not returned yet, must end it: on Python 3.11 asyncio.wait_for returned instead
    # (CPython #86296). A sleep that returned before the cancel came is simply over.
    monkeypatch.setattr(gradio_internals, "_IDLE_SLEEPS", {3600.0})

    async def stop_while_woken() -> tuple[bool, bool]:
        task = asyncio.ensure_future(gradio_internals._QUEUE_ASYNCIO.sleep(3600.0))
        for _ in range(3):
            await asyncio.sleep(0)  # the loop sleeps now
        gradio_internals._queue_wake().set()
        for _ in range(turns):
            await asyncio.sleep(0)
        sleeping = not task.done()
        task.cancel()
        for _ in range(20):
            await asyncio.sleep(0)
        return sleeping, task.cancelled()

    sleeping, cancelled = asyncio.run(stop_while_woken())
    assert cancelled == sleeping
