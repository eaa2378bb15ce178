"""The Admin and Usage tabs of the Gradio UI, driven as the page drives them (queue/join, then the session's event
stream) on a real server: the Admin tab is shown to admins only; every one of its events refuses a non-admin (Bob)
and changes nothing, even called by its index without the page; Alice's events do what their buttons say and leave
audit rows; the Usage tab shows each user their own figures only."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.accounts import AccountService
from services.request_log import RequestRecord, insert_rows
from storage.db import open_database
from storage.models import Account, UserLimit
from tests.server import serve
from tests.services.conftest import tiny_settings
from ui.admin_views import read_period, request_rows, usage_rows

PASSWORD = "correct horse battery"
GRADIO = "/gradio_api"


@dataclass
class Site:
    """The running server, its app, and each user's login cookie."""

    url: str
    app: Any
    cookies: dict[str, str] = field(default_factory=dict)

    def http(self, user: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, headers={"Cookie": self.cookies[user]})


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, tiny_sd_dir: Path) -> Iterator[Site]:
    settings = tiny_settings(tmp_path_factory.mktemp("data"), tiny_sd_dir, limit_reads="100000/minute")
    settings.ensure_dirs()
    open_database(settings.db_path)
    for name in ("alice", "bob", "carol"):
        AccountService().add(name, PASSWORD, admin=name == "alice")
    apps: list[Any] = []
    with serve(settings, apps) as url:
        found = Site(url.rstrip("/"), apps[0])
        for name in ("alice", "bob"):
            answer = httpx.post(found.url + "/login", data={"username": name, "password": PASSWORD})
            assert answer.status_code == 200
            found.cookies[name] = "; ".join(f"{k}={v}" for k, v in answer.cookies.items())
        yield found


@dataclass
class Page:
    """The page's config as a user's browser gets it: its events, and the components inside the Admin tab."""

    events: list[dict[str, Any]]
    admin_ids: set[int]
    labels: dict[int, str]

    def event(self, api_name: str) -> dict[str, Any]:
        return next(e for e in self.events if e["api_name"] == api_name)

    def event_on(self, name: str, elem_id: str) -> dict[str, Any]:
        """The first event of handler `name` (Gradio numbers repeated names: name_1, name_2…) that takes or fills
        the component `elem_id`: an event added elsewhere in the page must not shift which one a test runs."""
        return next(e for e in self.events if (e["api_name"] or "").split("_")[0] == name
                    and elem_id in {self.labels[i] for i in (*e["inputs"], *e["outputs"])})


def page(site: Site, user: str) -> Page:
    config = site.http(user).get("/config").json()
    labels = {c["id"]: c["props"].get("elem_id") or c["props"].get("label") or "" for c in config["components"]}
    tab = next(i for i, name in labels.items() if name == "admin-tab")

    def inside(node: dict[str, Any], found: bool) -> Iterator[int]:
        found = found or node["id"] == tab
        if found:
            yield node["id"]
        for child in node.get("children", []):
            yield from inside(child, found)

    return Page(config["dependencies"], set(inside(config["layout"], False)), labels)


def call(site: Site, user: str, event: dict[str, Any], data: list[Any]) -> dict[str, Any]:
    """Run one event as `user` in a new session, as the page runs it; its process_completed message."""
    session = uuid.uuid4().hex
    http = site.http(user)
    joined = http.post(f"{GRADIO}/queue/join", json={"data": data, "fn_index": event["id"], "session_hash": session,
                                                     "trigger_id": event["targets"][0][0] if event["targets"] else None,
                                                     "event_data": None})
    assert joined.status_code == 200, joined.text
    with http.stream("GET", f"{GRADIO}/queue/data", params={"session_hash": session}) as stream:
        for line in stream.iter_lines():
            message = json.loads(line[5:]) if line.startswith("data:") else {}
            if message.get("msg") == "process_completed":
                return message
    raise AssertionError("the event never completed")


def admin_events(site: Site) -> list[dict[str, Any]]:
    """Every event that fills or acts from the Admin tab (those its buttons trigger and those that follow them), but
    the row selections (they copy a cell of the table the browser already shows into a field) and the event that
    shows or hides the tab itself."""
    found = page(site, "bob")
    return [e for e in found.events if set(e["outputs"]) & found.admin_ids
            and not e["api_name"].startswith(("first_cell", "visible"))]


# Values for an admin event's inputs by their label: what Bob would send to do the most harm.
HARM = {"User": "carol", "Name": "mallory", "Password": PASSWORD, "Admin": True, "New password": "a new secret phrase",
        "Delete their images, conversations, limits and keys too (cannot be undone)": True, "Key name": "laptop",
        "Image jobs": "1/hour", "Chat messages": "1/hour", "Uploads": "1/hour", "Reads": "1/hour", "Queue quota": 1,
        "Job id": "x", "Model": "image", "Last days": 30}


def test_the_admin_tab_is_shown_to_admins_only(site: Site) -> None:
    for user, shown in (("alice", True), ("bob", False)):
        event = page(site, user).event("visible")
        done = call(site, user, event, [])
        assert done["success"], done
        assert done["output"]["data"][0]["visible"] is shown
    # Nothing of the panel's data is in Bob's page: the tables are empty until an admin's event fills them.
    config = site.http("bob").get("/config").json()
    users_table = next(c for c in config["components"] if c["props"].get("elem_id") == "admin-users")
    assert users_table["props"]["value"]["data"] in ([], [["", "", "", "", "", ""]])


def test_every_admin_event_refuses_bob_and_changes_nothing(site: Site) -> None:
    events = admin_events(site)
    labels = page(site, "bob").labels
    assert len(events) >= 30
    before = [(a.name, a.disabled, a.is_admin, a.password_hash) for a in Account.select().order_by(Account.name)]
    for event in events:
        data = [HARM.get(labels[i]) for i in event["inputs"]]
        done = call(site, "bob", event, data)
        assert not done["success"], (event["api_name"], done)
        assert "Only admins may use the admin panel." in done["output"]["error"], (event["api_name"], done)
    assert [(a.name, a.disabled, a.is_admin, a.password_hash)
            for a in Account.select().order_by(Account.name)] == before
    assert not UserLimit.select().exists()
    assert site.app.state.services.image_slot.status().state.value == "not loaded"
    site.app.state.services.request_log.flush()
    refused = site.app.state.services.admin.requests(kind="admin", user="bob", limit=200)["requests"]
    assert len(refused) == len(events)
    assert {r["status"] for r in refused} == {"failed"}


def test_alice_runs_the_panel(site: Site) -> None:
    found = page(site, "alice")
    users = call(site, "alice", found.event_on("load", "admin-users"), [])
    assert [row[0] for row in users["output"]["data"][0]["data"]] == ["alice", "bob", "carol"]
    created = call(site, "alice", found.event("create"), ["dora", PASSWORD, False])
    assert created["output"]["data"][0] == "Created dora."
    short = call(site, "alice", found.event("create"), ["erin", "short", False])
    assert not short["success"]
    assert "password" in short["output"]["error"].lower()
    assert not Account.select().where(Account.name == "erin").exists()
    saved = call(site, "alice", found.event("save"), ["dora", "2/minute", "", "", "", 3])
    assert saved["output"]["data"][:5] == ["2/minute", None, None, None, 3]
    # The quota's number box shows an empty value as 0: that keeps the setting, it is never refused as a quota.
    kept = call(site, "alice", found.event("save"), ["dora", "2/minute", "", "", "", 0])
    assert kept["success"], kept
    assert kept["output"]["data"][:5] == ["2/minute", None, None, None, None]
    bad = call(site, "alice", found.event("save"), ["dora", "often", "", "", "", None])
    assert "'often' is not a rate" in bad["output"]["error"]
    own = call(site, "alice", found.event("changed"), ["alice"])  # Disable, on herself
    assert "your own account" in own["output"]["error"]
    gone = call(site, "alice", found.event_on("delete", "admin-confirm-delete"), ["dora", True])
    assert gone["output"]["data"][0].startswith("Deleted dora:")
    assert not Account.select().where(Account.name == "dora").exists()
    assert not UserLimit.select().exists()
    site.app.state.services.request_log.flush()
    rows = call(site, "alice", found.event("search"), ["alice", "admin", "", "", "", "", "", None])
    reasons = [row[7] for row in rows["output"]["data"][0]["data"]]
    assert "created dora" in reasons
    assert "set the limits of dora: image_jobs=2/minute, chat_messages=default, uploads=default, reads=default, " \
           "queue_quota=3" in reasons
    assert "set the limits of dora: image_jobs=2/minute, chat_messages=default, uploads=default, reads=default, " \
           "queue_quota=default" in reasons
    assert any(r.startswith("deleted dora:") for r in reasons)


def test_the_usage_tab_shows_each_user_their_own(site: Site) -> None:
    now = dt.datetime.now(dt.UTC)
    insert_rows([RequestRecord("image", "done", started_at=now, user="alice", images=5, gpu_s=2.0),
                 RequestRecord("image", "done", started_at=now, user="bob", images=1, gpu_s=0.5)])
    for user, images in (("alice", 5), ("bob", 1)):
        event = page(site, user).event_on("show", "usage-table")
        done = call(site, user, event, [30, "", ""])
        (row,) = done["output"]["data"][1]["data"]
        assert row[6] == images  # the images column (the table has no user column)
    bad = call(site, "bob", page(site, "bob").event_on("show", "usage-table"), [None, "last week", ""])
    assert "since: 'last week' is not a date or time" in bad["output"]["error"]


def test_the_period_and_the_rows_as_the_tables_show_them() -> None:
    assert read_period(7, "", "") == {"days": 7.0}
    assert read_period(7, "2026-01-01", "2026-01-02T08:00") == {"since": dt.datetime(2026, 1, 1),
                                                              "until": dt.datetime(2026, 1, 2, 8)}
    with pytest.raises(ValueError, match="until: 'soon'"):
        read_period(None, "", "soon")
    figures = {"jobs": 2, "done": 1, "failed": 1, "cancelled": 0, "image_jobs": 2, "chat_replies": 0, "images": 3,
               "prompt_tokens": 0, "completion_tokens": 0, "gpu_seconds": 1.5}
    rows = usage_rows({"users": [{"user": None, **figures}], "total": {"user": None, **figures}})
    assert [r[0] for r in rows] == ["(no account)", "everyone"]
    row = {"id": 1, "started_at": "2026-01-01T08:00:00.123+00:00", "user": "bob", "client": "10.0.0.2",
           "route": "/api/history", "kind": "read", "status": "done", "reason": "", "http_status": 200,
           "duration_s": 0.01, "queue_wait_s": None, "model": "", "images": 0, "prompt_tokens": 0,
           "completion_tokens": 0, "gpu_s": 0.0, "replica": "a", "request_id": "r1"}
    assert request_rows([row])[0][:3] == [1, "2026-01-01 08:00:00", "bob"]


IMAGE: dict[str, Any] = {"prompt": "a fox", "negative_prompt": "", "width": 64, "height": 64, "steps": 1,
                         "cfg_scale": 7.0, "seed": 42, "sampler": "Euler a", "batch_count": 1}


def test_a_gradio_job_is_one_request_log_row_with_its_request(site: Site) -> None:
    http = site.http("bob")
    event = page(site, "bob").event("generate_image")
    session = uuid.uuid4().hex
    joined = http.post(f"{GRADIO}/queue/join", json={"data": list(IMAGE.values()), "fn_index": event["id"],
                                                     "session_hash": session})
    assert joined.status_code == 200, joined.text
    request_id = joined.headers["x-request-id"]
    with http.stream("GET", f"{GRADIO}/queue/data", params={"session_hash": session}) as stream:
        messages = [json.loads(line[5:]) for line in stream.iter_lines() if line.startswith("data:")]
    (done,) = [m for m in messages if m.get("msg") == "process_completed"]
    assert done["success"], done
    log = site.app.state.services.request_log
    log.flush()
    rows = site.app.state.services.admin.requests(request_id=request_id, limit=10)["requests"]
    (row,) = rows  # the job's row is the request's row: no second one for the queue/join
    assert {k: row[k] for k in ("kind", "status", "user", "client", "route", "images")} == {
        "kind": "image", "status": "done", "user": "bob", "client": "127.0.0.1", "route": "/generate_image",
        "images": 1}
    assert row["queue_wait_s"] is not None
    assert row["duration_s"] >= row["queue_wait_s"] >= 0
    assert row["gpu_s"] > 0
    assert row["job_id"] is not None


def test_an_admins_own_low_read_limit_never_locks_them_out_of_the_panel(site: Site) -> None:
    limits = site.app.state.services.limits
    limits.set("alice", "alice", reads="1/hour")
    try:
        load_users = page(site, "alice").event_on("load", "admin-users")
        for _ in range(3):  # the panel's events count against the setting's read limit, never less
            done = call(site, "alice", load_users, [])
            assert done["success"], done
    finally:
        limits.clear("alice")
