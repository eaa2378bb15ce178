"""The admin routes under /api/admin and GET /api/usage, on SQLite and PostgreSQL: Alice (an admin) manages users,
their keys, limits, the queue and the models and reads usage and the request log; Bob (not an admin) and anonymous
callers get 403 / 401 from every admin route and change nothing; bad input gets a 4xx naming what is wrong; every
admin action leaves a request log row saying what it did.

No lifespan runs: Gradio's queue holds every job that joins and runs none, so a queued job stays there to be listed
and stopped. The request log's writer is started by hand."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from api.server import create_app
from services.accounts import AccountService
from services.metrics import REFUSALS
from services.request_log import RequestRecord, insert_rows
from storage.db import open_database
from storage.models import Account, Conversation, ImageFile, ImageJob, Message, UserLimit
from tests.services.conftest import tiny_settings

PASSWORD = "correct horse battery"
IMAGE: dict[str, Any] = {"prompt": "a fox", "negative_prompt": "", "width": 64, "height": 64, "steps": 1,
                         "cfg_scale": 7.0, "seed": 42, "sampler": "Euler a", "batch_count": 1}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, tiny_sd_dir: Path, module_database_url: str) -> Iterator[FastAPI]:
    settings = tiny_settings(tmp_path_factory.mktemp("data"), tiny_sd_dir, database_url=module_database_url,
                             limit_reads="10000/minute", limit_image_jobs="50/minute", user_queue_quota=10,
                             limit_logins="1000/minute")
    settings.ensure_dirs()
    open_database(settings.database_location)
    for name in ("alice", "bob", "carol"):
        AccountService().add(name, PASSWORD, admin=name == "alice")
    app = create_app(settings)
    app.state.services.request_log.start()
    yield app
    app.state.services.request_log.stop()


def client(app: FastAPI, user: str | None = None) -> TestClient:
    """A client logged in as `user` (its Gradio login cookie, one login per user and app), or anonymous."""
    http = TestClient(app)
    if user is not None:
        logins: dict[str, Any] = app.state.__dict__.setdefault("test_logins", {})
        if user not in logins:
            assert http.post("/login", data={"username": user, "password": PASSWORD}).status_code == 200
            logins[user] = dict(http.cookies)
        http.cookies.update(logins[user])
    return http


def admin_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path) under /api/admin, path parameters filled with values that exist."""
    filled = {"{name}": "carol", "{key}": "key-1", "{job_id}": "abc123", "{kind}": "image"}
    found = []
    for template, operations in app.openapi()["paths"].items():
        if template.startswith("/api/admin"):
            path = template
            for name, value in filled.items():
                path = path.replace(name, value)
            found += [(method.upper(), path) for method in sorted(operations)]
    return found


BODIES = {("POST", "/api/admin/users"): {"name": "mallory", "password": PASSWORD, "admin": True},
          ("PATCH", "/api/admin/users/carol"): {"disabled": True},
          ("PATCH", "/api/admin/limits/carol"): {"image_jobs": "1000/minute"},
          ("POST", "/api/admin/models/image"): {"action": "load"}}


def test_bob_and_anonymous_get_nothing_from_any_admin_route(app: FastAPI) -> None:
    routes = admin_routes(app)
    assert len(routes) >= 17
    bob, nobody = client(app, "bob"), client(app)
    for method, path in routes:
        body = BODIES.get((method, path))
        refused = bob.request(method, path, json=body)
        assert refused.status_code == 403, (method, path, refused.text)
        assert refused.json()["detail"] == "Only admins may use the admin routes."
        assert nobody.request(method, path, json=body).status_code == 401, (method, path)
        # HTTP basic as bob is no different from his cookie.
        assert bob.request(method, path, json=body, auth=("bob", PASSWORD)).status_code == 403
    # Nothing changed: no new account, carol enabled with no limits of her own, the image model untouched.
    assert not Account.select().where(Account.name == "mallory").exists()
    assert not Account.get(Account.name == "carol").disabled
    assert not UserLimit.select().exists()
    assert app.state.services.image_slot.status().state.value == "not loaded"


def test_a_change_from_another_site_is_refused(app: FastAPI) -> None:
    alice = client(app, "alice")
    answer = alice.patch("/api/admin/users/carol", json={"disabled": True}, headers={"origin": "https://evil.test"})
    assert answer.status_code == 403
    assert "Origin" in answer.json()["detail"]
    assert not Account.get(Account.name == "carol").disabled
    same = alice.patch("/api/admin/users/carol", json={"disabled": False}, headers={"origin": "http://testserver"})
    assert same.status_code == 200  # the server's own page


@pytest.mark.parametrize(("method", "path", "body", "status", "says"), [
    ("POST", "/api/admin/users", {"name": "x y", "password": PASSWORD}, 422, "name"),
    ("POST", "/api/admin/users", {"name": "dora", "password": "short"}, 422, "password"),
    ("POST", "/api/admin/users", {"name": "dora", "password": PASSWORD, "role": "god"}, 422, "role"),
    ("POST", "/api/admin/users", {"name": "bob", "password": PASSWORD}, 409, "already exists"),
    ("POST", "/api/admin/users", [1, 2], 422, "body"),
    ("GET", "/api/admin/users/nobody", None, 404, "no user 'nobody'"),
    ("GET", "/api/admin/users/a%20b", None, 422, "name"),
    ("GET", "/api/admin/users/" + "n" * 65, None, 422, "name"),
    ("PATCH", "/api/admin/users/carol", {"disabled": "maybe"}, 422, "disabled"),
    ("PATCH", "/api/admin/users/carol", {"password": "short"}, 422, "password"),
    ("PATCH", "/api/admin/users/nobody", {"disabled": True}, 404, "no user 'nobody'"),
    ("PATCH", "/api/admin/users/alice", {"disabled": True}, 409, "your own account"),
    ("PATCH", "/api/admin/users/alice", {"admin": False}, 409, "your own admin role"),
    ("DELETE", "/api/admin/users/alice", None, 409, "your own account"),
    ("DELETE", "/api/admin/users/nobody", None, 404, "no user 'nobody'"),
    ("GET", "/api/admin/users/nobody/keys", None, 404, "no user 'nobody'"),
    ("DELETE", "/api/admin/users/carol/keys/" + "k" * 65, None, 422, "key"),
    ("GET", "/api/admin/usage?days=0", None, 422, "days"),
    ("GET", "/api/admin/usage?days=5&since=2026-01-01T00:00:00", None, 422, "either since or days"),
    ("GET", "/api/admin/usage?since=2030-01-02&until=2030-01-01", None, 422, "must come before until"),
    ("GET", "/api/admin/usage?since=yesterday", None, 422, "since"),
    ("GET", "/api/admin/limits/nobody", None, 404, "no user 'nobody'"),
    ("PATCH", "/api/admin/limits/carol", {"image_jobs": "often"}, 422, "'often' is not a rate"),
    ("PATCH", "/api/admin/limits/carol", {"image_jobs": "0/minute"}, 422, "allows nothing"),
    ("PATCH", "/api/admin/limits/carol", {"queue_quota": 0}, 422, "queue_quota"),
    ("PATCH", "/api/admin/limits/carol", {"queue_quota": 5000}, 422, "queue_quota"),
    ("PATCH", "/api/admin/limits/carol", {"gpu": "all"}, 422, "gpu"),
    ("PATCH", "/api/admin/limits/carol", {}, 422, "nothing to change"),
    ("PATCH", "/api/admin/limits/nobody", {"reads": "5/minute"}, 404, "no user 'nobody'"),
    ("DELETE", "/api/admin/queue/not-a-job", None, 404, "no job 'not-a-job'"),
    ("DELETE", "/api/admin/queue/a%20b", None, 422, "job_id"),
    ("POST", "/api/admin/models/sound", {"action": "load"}, 422, "kind"),
    ("POST", "/api/admin/models/image", {"action": "explode"}, 422, "action"),
    ("POST", "/api/admin/models/image", {"action": "offload"}, 409, "cannot be offloaded now"),
    ("GET", "/api/admin/requests?kind=bogus", None, 422, "kind"),
    ("GET", "/api/admin/requests?status=lost", None, 422, "status"),
    ("GET", "/api/admin/requests?limit=0", None, 422, "limit"),
    ("GET", "/api/admin/requests?before=0", None, 422, "before"),
    ("GET", "/api/usage?days=-1", None, 422, "days"),
])
def test_bad_input_gets_a_clear_4xx_and_changes_nothing(app: FastAPI, method: str, path: str, body: Any, status: int,
                                                        says: str) -> None:
    before = [(a.name, a.disabled, a.is_admin) for a in Account.select().order_by(Account.name)]
    answer = client(app, "alice").request(method, path, json=body)
    assert answer.status_code == status, answer.text
    detail = answer.json()["detail"]
    text = detail if isinstance(detail, str) else " ".join(f"{e['loc'][-1]} {e['msg']}" for e in detail)
    assert says.lower() in text.lower(), text
    assert [(a.name, a.disabled, a.is_admin) for a in Account.select().order_by(Account.name)] == before
    assert not UserLimit.select().exists()


def image_fn(http: TestClient) -> int:
    return next(d["id"] for d in http.get("/config").json()["dependencies"] if d.get("api_name") == "generate_image")


def join(http: TestClient, session: str) -> Any:
    return http.post("/gradio_api/queue/join", json={"data": list(IMAGE.values()), "fn_index": image_fn(http),
                                                     "session_hash": session})


def test_disabling_ends_a_users_sessions_and_enabling_lets_them_back(app: FastAPI) -> None:
    alice, dave = client(app, "alice"), TestClient(app)
    assert alice.post("/api/admin/users", json={"name": "dave", "password": PASSWORD}).status_code == 201
    assert dave.post("/login", data={"username": "dave", "password": PASSWORD}).status_code == 200
    assert dave.get("/api/history").status_code == 200
    joined = join(dave, "dave-session")
    assert joined.status_code == 200
    changed = alice.patch("/api/admin/users/dave", json={"disabled": True})
    assert changed.status_code == 200
    assert changed.json()["done"] == ["disabled dave", "ended the sessions of dave and stopped 1 job(s)"]
    assert changed.json()["user"]["disabled"] is True
    assert all(job["user"] != "dave" for job in alice.get("/api/admin/queue").json()["jobs"])
    assert dave.get("/api/history").status_code == 401  # the login cookie no longer stands for anyone
    assert dave.get("/config").status_code == 401  # Gradio's page asks for a login again
    assert dave.post("/login", data={"username": "dave", "password": PASSWORD}).status_code == 400
    refused = dave.get("/api/history", auth=("dave", PASSWORD))
    assert refused.status_code == 401
    assert alice.patch("/api/admin/users/dave", json={"disabled": False}).json()["done"] == ["enabled dave"]
    assert dave.post("/login", data={"username": "dave", "password": PASSWORD}).status_code == 200
    assert dave.get("/api/history").status_code == 200


def test_password_reset_and_the_admin_role(app: FastAPI) -> None:
    alice = client(app, "alice")
    assert alice.post("/api/admin/users", json={"name": "erin", "password": PASSWORD}).status_code == 201
    assert alice.patch("/api/admin/users/erin", json={"password": "a new secret phrase"}).json()["done"] == [
        "reset the password of erin"]
    assert TestClient(app).post("/login", data={"username": "erin", "password": PASSWORD}).status_code == 400
    erin = TestClient(app)
    assert erin.post("/login", data={"username": "erin", "password": "a new secret phrase"}).status_code == 200
    assert erin.get("/api/admin/users").status_code == 403
    assert alice.patch("/api/admin/users/erin", json={"admin": True}).status_code == 200
    assert [u["name"] for u in erin.get("/api/admin/users").json()["users"]][:2] == ["alice", "bob"]
    assert alice.patch("/api/admin/users/erin", json={"admin": False}).status_code == 200
    assert erin.get("/api/admin/users").status_code == 403


def test_deleting_a_user_deletes_their_data_and_no_one_elses(app: FastAPI) -> None:
    services = app.state.services
    alice = client(app, "alice")
    assert alice.post("/api/admin/users", json={"name": "frank", "password": PASSWORD}).status_code == 201
    mine = [make_job(services.settings.images_dir, user) for user in ("frank", "frank", "bob")]
    talks = [Conversation.create(user=user, title="hi") for user in ("frank", "bob")]
    for talk in talks:
        Message.create(conversation=talk, position=0, role="user", content="hi")
    alice.patch("/api/admin/limits/frank", json={"reads": "5/minute"})
    gone = alice.delete("/api/admin/users/frank")
    assert gone.status_code == 200, gone.text
    assert gone.json() == {"user": "frank", "stopped_jobs": 0, "image_jobs": 2, "conversations": 1, "keys": 0}
    assert not Account.select().where(Account.name == "frank").exists()
    assert [j.user for j in ImageJob.select()] == ["bob"]
    assert [(services.settings.images_dir / path).exists() for path in mine] == [False, False, True]
    assert [c.user for c in Conversation.select()] == ["bob"]
    assert not UserLimit.select().exists()
    assert TestClient(app).post("/login", data={"username": "frank", "password": PASSWORD}).status_code == 400
    assert alice.delete("/api/admin/users/frank").status_code == 404
    ImageJob.delete().execute()
    Conversation.delete().execute()


def make_job(images_dir: Path, user: str) -> str:
    """An image job of `user` with one stored PNG; the PNG's path in the images folder."""
    job = ImageJob.create(user=user, backend="diffusers", model="tiny", prompt="a fox", width=8, height=8, steps=1,
                          cfg_scale=7.0, seed=1, seed_used=1, sampler="Euler a", status="done")
    path = f"{user}-{job.id}.png"
    Image.new("RGB", (8, 8)).save(images_dir / path)
    ImageFile.create(job=job, index=0, path=path, seed=1, width=8, height=8)
    return path


def test_a_users_own_limits_apply_to_their_next_request(app: FastAPI) -> None:
    alice, carol, bob = client(app, "alice"), client(app, "carol"), client(app, "bob")
    set_ = alice.patch("/api/admin/limits/carol", json={"image_jobs": "1/minute", "queue_quota": 5})
    assert set_.json() == {"user": "carol", "image_jobs": "1/minute", "chat_messages": "30/minute",
                           "uploads": "30/minute", "reads": "10000/minute", "queue_quota": 5,
                           "overridden": ["image_jobs", "queue_quota"]}
    assert join(carol, "c1").status_code == 200
    refused = join(carol, "c2")
    assert refused.status_code == 429
    assert "the limit is 1 per 1 minute" in refused.json()["detail"]
    assert join(bob, "b1").status_code == 200  # bob keeps the setting's limit
    listed = alice.get("/api/admin/limits").json()
    assert [u["user"] for u in listed["users"]] == ["carol"]
    assert listed["defaults"]["image_jobs"] == "50/minute"
    # The queue quota: carol's own 1 refuses her second job before it is queued.
    alice.patch("/api/admin/limits/carol", json={"image_jobs": None, "queue_quota": 1})
    quota = join(carol, "c3")
    assert quota.status_code == 422
    assert "the limit is 1" in quota.text
    assert alice.delete("/api/admin/limits/carol").json()["overridden"] == []
    assert join(carol, "c4").status_code == 200
    for job in alice.get("/api/admin/queue").json()["jobs"]:
        alice.delete(f"/api/admin/queue/{job['id']}")


def test_the_live_queue_lists_any_users_job_and_stops_it(app: FastAPI) -> None:
    alice, bob = client(app, "alice"), client(app, "bob")
    event = join(bob, "bob-session").json()["event_id"]
    listed = alice.get("/api/admin/queue").json()
    (job,) = [j for j in listed["jobs"] if j["id"] == event]
    assert {k: job[k] for k in ("user", "route", "kind", "status")} == {
        "user": "bob", "route": "/generate_image", "kind": "image", "status": "waiting"}
    assert job["seconds"] >= 0
    assert alice.delete(f"/api/admin/queue/{event}").status_code == 204
    assert all(j["id"] != event for j in alice.get("/api/admin/queue").json()["jobs"])
    assert alice.delete(f"/api/admin/queue/{event}").status_code == 404


def test_models_load_offload_and_unload_on_an_admins_word(app: FastAPI) -> None:
    alice = client(app, "alice")
    models = alice.get("/api/admin/models").json()["models"]
    assert [(m["kind"], m["state"]) for m in models] == [("image", "not loaded"), ("text", "not loaded")]
    assert alice.post("/api/admin/models/image", json={"action": "load"}).json()["state"] in ("loading", "ready")
    deadline = time.monotonic() + 120
    while alice.get("/api/admin/models").json()["models"][0]["state"] != "ready":
        assert time.monotonic() < deadline, alice.get("/api/admin/models").json()
        time.sleep(0.2)
    assert alice.post("/api/admin/models/image", json={"action": "offload"}).json()["state"] == "offloaded"
    assert alice.post("/api/admin/models/image", json={"action": "load"}).status_code == 200
    while alice.get("/api/admin/models").json()["models"][0]["state"] != "ready":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert alice.post("/api/admin/models/image", json={"action": "unload"}).json()["state"] == "not loaded"


def test_usage_for_each_user_and_for_the_admin(app: FastAPI) -> None:
    now = dt.datetime.now(dt.UTC)
    insert_rows([
        RequestRecord("image", "done", started_at=now, user="bob", images=4, gpu_s=2.5),
        RequestRecord("chat", "done", started_at=now, user="bob", prompt_tokens=10, completion_tokens=30, gpu_s=1.0),
        RequestRecord("image", "refused", started_at=now, user="bob", reason="image"),  # never ran: not usage
        RequestRecord("image", "failed", started_at=now, user="carol", gpu_s=0.5),
        RequestRecord("image", "done", started_at=now - dt.timedelta(days=40), user="carol", images=1),
    ])
    bob = client(app, "bob").get("/api/usage").json()
    assert bob["users"] == [{"user": "bob", "jobs": 2, "done": 2, "failed": 0, "cancelled": 0, "image_jobs": 1,
                             "chat_replies": 1, "images": 4, "prompt_tokens": 10, "completion_tokens": 30,
                             "gpu_seconds": 3.5}]
    carol = client(app, "carol").get("/api/usage?days=60").json()["users"][0]
    assert (carol["jobs"], carol["images"], carol["failed"]) == (2, 1, 1)
    everyone = client(app, "alice").get("/api/admin/usage").json()
    assert [(u["user"], u["jobs"]) for u in everyone["users"]] == [("bob", 2), ("carol", 1)]
    assert everyone["total"]["gpu_seconds"] == 4.0
    one = client(app, "alice").get("/api/admin/usage?user=carol&days=60").json()
    assert [(u["user"], u["jobs"]) for u in one["users"]] == [("carol", 2)]


def test_every_admin_action_is_in_the_request_log(app: FastAPI) -> None:
    alice = client(app, "alice")
    alice.patch("/api/admin/limits/bob", json={"reads": "999/minute"})
    alice.delete("/api/admin/limits/bob")
    client(app, "bob").get("/api/admin/users")
    app.state.services.request_log.flush()
    rows = alice.get("/api/admin/requests?kind=admin&limit=500").json()["requests"]
    said = [(r["user"], r["status"], r["route"], r["reason"]) for r in rows]
    assert ("alice", "done", "PATCH /api/admin/limits/bob", "set the limits of bob: reads=999/minute") in said
    assert ("alice", "done", "DELETE /api/admin/limits/bob", "returned bob to the default limits") in said
    assert ("bob", "failed", "/api/admin/users", "Only admins may use the admin routes.") in said
    assert all(r["request_id"] and r["client"] for r in rows)
    page = alice.get("/api/admin/requests?kind=admin&limit=2").json()
    older = alice.get(f"/api/admin/requests?kind=admin&limit=2&before={page['next_before']}").json()
    assert [r["id"] for r in page["requests"]] > [r["id"] for r in older["requests"]]
    by_id = alice.get(f"/api/admin/requests?request_id={rows[0]['request_id']}").json()["requests"]
    assert [r["id"] for r in by_id] == [rows[0]["id"]]


class KeysStandIn:
    """The API key service's interface (issue 21), in memory: what the admin routes call."""

    def __init__(self) -> None:
        self.keys = {"carol": [{"name": "laptop", "prefix": "atl_AbCdEf…", "created_at": "2026-01-01T00:00:00",
                                "last_used_at": None}]}

    def list(self, user: str) -> list[dict[str, Any]]:
        return list(self.keys.get(user, []))

    def revoke(self, user: str, name: str) -> bool:
        before = len(self.keys.get(user, []))
        self.keys[user] = [k for k in self.keys.get(user, []) if k["name"] != name]
        return len(self.keys[user]) < before

    def revoke_all(self, user: str) -> int:
        return len(self.keys.pop(user, []))


def test_a_users_keys_are_listed_and_revoked_through_the_key_service(app: FastAPI) -> None:
    services = app.state.services
    real, services.admin.keys = services.admin.keys, KeysStandIn()
    try:
        alice = client(app, "alice")
        assert alice.get("/api/admin/users/carol/keys").json() == {"keys": services.admin.keys.keys["carol"]}
        assert [u["keys"] for u in alice.get("/api/admin/users").json()["users"] if u["name"] == "carol"] == [1]
        assert client(app, "bob").delete("/api/admin/users/carol/keys/laptop").status_code == 403
        assert alice.delete("/api/admin/users/carol/keys/laptop").status_code == 204
        assert alice.get("/api/admin/users/carol/keys").json() == {"keys": []}
        assert alice.delete("/api/admin/users/carol/keys/laptop").status_code == 404
    finally:
        services.admin.keys = real


def test_the_admin_lists_and_revokes_keys_made_by_the_key_service(app: FastAPI) -> None:
    alice, bob = client(app, "alice"), client(app, "bob")
    key, _ = app.state.services.api_keys.create("carol", "laptop")
    assert [k["name"] for k in alice.get("/api/admin/users/carol/keys").json()["keys"]] == ["laptop"]
    assert key not in alice.get("/api/admin/users/carol/keys").text  # never the key itself
    assert bob.get("/api/admin/users/carol/keys").status_code == 403
    assert alice.delete("/api/admin/users/carol/keys/laptop").status_code == 204
    assert app.state.services.api_keys.user_of(key) is None


def test_the_last_enabled_admin_is_never_removed(app: FastAPI) -> None:
    import asyncio

    from services.admin import AdminError

    admin = app.state.services.admin
    alice = client(app, "alice")
    assert alice.post("/api/admin/users", json={"name": "gina", "password": PASSWORD, "admin": True}).status_code == 201
    assert alice.patch("/api/admin/users/gina", json={"disabled": True}).status_code == 200
    # gina is an admin but disabled: alice is the last one who can run the server, whoever asks.
    for change in ({"admin": False}, {"disabled": True}):
        with pytest.raises(AdminError, match="alice is the last enabled admin") as refused:
            asyncio.run(admin.update_user("alice", "someone", **change))
        assert refused.value.status == 409
    with pytest.raises(AdminError, match="last enabled admin"):
        asyncio.run(admin.delete_user("alice", "someone"))
    assert (Account.get(Account.name == "alice").is_admin, Account.get(Account.name == "alice").disabled) == (True,
                                                                                                              False)
    # With gina enabled there are two: either may demote the other, and the one left is the last again.
    assert alice.patch("/api/admin/users/gina", json={"disabled": False}).status_code == 200
    gina = TestClient(app)
    assert gina.post("/login", data={"username": "gina", "password": PASSWORD}).status_code == 200
    assert gina.patch("/api/admin/users/alice", json={"admin": False}).status_code == 200
    assert alice.get("/api/admin/users").status_code == 403
    assert gina.patch("/api/admin/users/gina", json={"admin": False}).status_code == 409
    assert gina.patch("/api/admin/users/alice", json={"admin": True}).status_code == 200
    assert alice.delete("/api/admin/users/gina").status_code == 200


def test_bob_sees_his_own_usage_only(app: FastAPI) -> None:
    now = dt.datetime.now(dt.UTC)
    insert_rows([RequestRecord("image", "done", started_at=now, user="alice", images=777, gpu_s=99.0)])
    bob = client(app, "bob")
    own = bob.get("/api/usage").json()
    # A `user` of someone else's is no way in: the figures are still his.
    assert bob.get("/api/usage?user=alice").json()["users"] == own["users"]
    assert [u["user"] for u in own["users"]] == ["bob"]
    assert "777" not in bob.get("/api/usage?user=alice&days=365").text
    assert client(app).get("/api/usage").status_code == 401
    alices = client(app, "alice").get("/api/usage").json()["users"][0]
    assert (alices["user"], alices["images"]) == ("alice", 777)


def test_requests_logins_and_refusals_are_logged_and_passwords_never(app: FastAPI) -> None:
    log = app.state.services.request_log
    alice, bob = client(app, "alice"), client(app, "bob")
    read = bob.get("/api/history")
    request_id = read.headers["x-request-id"]
    assert TestClient(app).post("/login", data={"username": "bob", "password": "hunter2 is wrong"}).status_code == 400
    assert TestClient(app).get("/api/history", auth=("bob", "hunter3 is wrong")).status_code == 401
    refusals_before = REFUSALS.labels("read")._value.get()
    alice.patch("/api/admin/limits/bob", json={"reads": "1/minute"})
    try:
        assert bob.get("/api/history").status_code == 200
        assert bob.get("/api/history").status_code == 429
    finally:
        alice.delete("/api/admin/limits/bob")
    log.flush()
    (row,) = alice.get(f"/api/admin/requests?request_id={request_id}").json()["requests"]
    assert {k: row[k] for k in ("kind", "status", "user", "route", "http_status")} == {
        "kind": "read", "status": "done", "user": "bob", "route": "/api/history", "http_status": 200}
    logins = alice.get("/api/admin/requests?kind=login&user=bob&status=failed&limit=10").json()["requests"]
    assert len(logins) >= 2
    refused = alice.get("/api/admin/requests?user=bob&status=refused&limit=5").json()["requests"]
    assert [(r["kind"], r["http_status"]) for r in refused[:1]] == [("read", 429)]
    assert "the limit is 1 per 1 minute" in refused[0]["reason"]
    assert REFUSALS.labels("read")._value.get() == refusals_before + 1
    everything = alice.get("/api/admin/requests?limit=500").text
    assert "hunter2" not in everything
    assert "hunter3" not in everything


def test_a_demoted_admin_loses_the_admin_routes_and_metrics_at_once(app: FastAPI) -> None:
    alice = client(app, "alice")
    assert alice.post("/api/admin/users", json={"name": "hank", "password": PASSWORD, "admin": True}).status_code == 201
    hank = TestClient(app)
    assert hank.post("/login", data={"username": "hank", "password": PASSWORD}).status_code == 200
    assert hank.get("/metrics").status_code == 200  # the test client is no loopback peer: his admin role lets him in
    assert hank.get("/api/admin/users").status_code == 200
    assert alice.patch("/api/admin/users/hank", json={"admin": False}).status_code == 200
    assert hank.get("/metrics").status_code == 403
    assert hank.get("/api/admin/users").status_code == 403
    assert client(app, "bob").get("/metrics").status_code == 403
    assert alice.delete("/api/admin/users/hank").status_code == 200


def test_me_says_who_asks_and_whether_an_admin(app: FastAPI) -> None:
    assert client(app, "alice").get("/api/me").json() == {"name": "alice", "admin": True}
    assert client(app, "bob").get("/api/me").json() == {"name": "bob", "admin": False}
    assert client(app, "bob").get("/api/me?name=alice").json()["name"] == "bob"
    assert client(app).get("/api/me").status_code == 401


def test_the_queue_lists_and_stops_the_other_apis_jobs_too(app: FastAPI) -> None:
    from tests.services.test_running import handle

    running = app.state.services.running
    job = handle()
    ref = running.add(job, "bob", "image", "openai", "a fox").ref
    alice, bob = client(app, "alice"), client(app, "bob")
    listed = [j for j in alice.get("/api/admin/queue").json()["jobs"] if j["id"] == ref]
    assert [(j["user"], j["route"], j["kind"], j["status"]) for j in listed] == [("bob", "/v1", "image", "running")]
    assert bob.delete(f"/api/admin/queue/{ref}").status_code == 403
    assert not job.stop_event.is_set()
    assert alice.delete(f"/api/admin/queue/{ref}").status_code == 204
    assert job.stop_event.is_set()
    job.update(status="cancelled")  # over: the registry forgets it


def test_an_admin_cannot_lock_themselves_out_of_the_panel_with_a_low_read_limit(app: FastAPI) -> None:
    alice = client(app, "alice")
    assert alice.post("/api/admin/users", json={"name": "dora", "password": PASSWORD, "admin": True}).status_code == 201
    dora = client(app, "dora")
    try:
        # Dora sets her own read limit to one a minute: it holds for her reads elsewhere...
        assert dora.patch("/api/admin/limits/dora", json={"reads": "1/minute"}).json()["reads"] == "1/minute"
        assert dora.get("/api/history").status_code == 200
        refused = dora.get("/api/history")
        assert refused.status_code == 429
        # ...but the admin routes count against the server's setting (10000/minute here), never less: she can
        # still use the panel, and undo it there.
        for _ in range(3):
            assert dora.get("/api/admin/users").status_code == 200
            assert dora.get("/api/admin/limits/dora").status_code == 200
        assert dora.patch("/api/admin/limits/dora", json={"reads": None}).json()["overridden"] == []
        assert dora.get("/api/history").status_code == 200
    finally:
        alice.delete("/api/admin/users/dora")
