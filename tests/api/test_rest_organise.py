"""Issue 25's REST routes with two accounts: Alice searches, favourites, renames, collects, deletes, exports and imports
her own things; Bob, logged in beside her, can do none of it to hers (her ids answer 404 "does not exist", as every
route answers an id that is not yours); pages of another site are refused; bad input gets a 4xx naming the field."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.server import create_app
from services.accounts import AccountService
from services.archive import job_inputs
from settings import Settings
from storage.db import open_database
from storage.models import Collection, Conversation, ImageFile, ImageJob
from tests.services.helpers import add_chat, add_stored_job, control_units

PASSWORD = "correct horse battery"
ARCHIVE_MAX = 256 * 1024


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    config = Settings(profile="tiny", data_dir=tmp_path_factory.mktemp("data"), warmup=False,
                      limit_reads="100000/minute", limit_uploads="100000/minute", archive_max_bytes=ARCHIVE_MAX)
    config.ensure_dirs()
    open_database(config.db_path)
    for name in ("alice", "bob"):
        AccountService().add(name, PASSWORD)
    return create_app(config)


def client(app: Any, user: str) -> TestClient:
    http = TestClient(app)
    assert http.post("/login", data={"username": user, "password": PASSWORD}).status_code == 200
    return http


@pytest.fixture(scope="module")
def alice(app: Any) -> TestClient:
    return client(app, "alice")


@pytest.fixture(scope="module")
def bob(app: Any) -> TestClient:
    return client(app, "bob")


@pytest.fixture
def store(app: Any) -> Any:
    return app.state.services.history.store


def unzip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {name: z.read(name) for name in z.namelist()}


def test_search_pages_marks_and_filters(alice: TestClient, bob: TestClient, store: Any) -> None:
    cats = [add_stored_job(store, "alice", f"a ginger cat number {i}").id for i in range(5)]
    add_stored_job(store, "alice", "a dog")
    add_stored_job(store, "bob", "bob's ginger cat")
    page = alice.get("/api/history", params={"q": "ginger cat", "limit": 2}).json()
    assert page["order"] == "relevance"
    assert page["note"] is None
    seen = [j["job_id"] for j in page["jobs"]]
    assert [s["text"] for s in page["jobs"][0]["highlight"]["prompt"] if s["match"]] == ["ginger", "cat"]
    while page["next_cursor"]:
        page = alice.get("/api/history", params={"q": "ginger cat", "limit": 2, "cursor": page["next_cursor"]}).json()
        seen += [j["job_id"] for j in page["jobs"]]
    assert sorted(seen) == cats
    newest = alice.get("/api/history", params={"q": "", "mode": "txt2img", "limit": 3}).json()
    assert [j["job_id"] for j in newest["jobs"]][1:] == cats[:-3:-1]
    assert alice.get("/api/history", params={"limit": 2}).json()["next_before"]  # the old paging still works
    mine = {j["job_id"] for j in bob.get("/api/history", params={"q": "ginger"}).json()["jobs"]}
    assert mine
    assert not mine & set(cats)


@pytest.mark.parametrize(("params", "field"), [({"since": "yesterday"}, "since"), ({"mode": "sketch"}, "mode"),
                                               ({"cursor": "%%%"}, "cursor"), ({"width": 0}, "width"),
                                               ({"since": "2026-02-02", "until": "2026-02-01"}, "until")])
def test_a_bad_search_names_the_field(alice: TestClient, params: dict[str, Any], field: str) -> None:
    answer = alice.get("/api/history", params={"q": "cat", **params})
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["loc"][-1] == field
    assert answer.json()["detail"][0]["msg"]


def test_favourites_are_hers_alone(alice: TestClient, bob: TestClient, store: Any) -> None:
    job = add_stored_job(store, "alice", "a favourite lighthouse").id
    assert alice.post(f"/api/history/{job}/favourite").json() == {"job_id": job, "favourite": True}
    found = alice.get("/api/history", params={"q": "lighthouse", "favourite": "true"}).json()["jobs"]
    assert [(j["job_id"], j["favourite"]) for j in found] == [(job, True)]
    for method in ("post", "delete"):
        answer = getattr(bob, method)(f"/api/history/{job}/favourite")
        assert (answer.status_code, answer.json()) == (404, {"detail": f"job {job} does not exist."})
    assert ImageJob.get_by_id(job).favourite
    assert alice.delete(f"/api/history/{job}/favourite").json()["favourite"] is False
    assert alice.post("/api/history/99999999/favourite").status_code == 404


def test_conversations_search_rename_favourite_export(alice: TestClient, bob: TestClient) -> None:
    chat = add_chat("alice", "Cooking", ("how long for pasta al dente?", ""),
                    ("About nine minutes.", "They want pasta timing </details>")).id
    add_chat("bob", "Bob's pasta", ("pasta", ""))
    hits = alice.get("/api/conversations", params={"q": "pasta"}).json()["conversations"]
    assert [c["conversation_id"] for c in hits] == [chat]
    assert alice.get("/api/conversations", params={"q": "timing", "reasoning": "false"}).json()[
        "conversations"] == []
    assert alice.patch(f"/api/conversations/{chat}", json={"title": "  Pasta   times "}).json()["title"] == \
        "Pasta times"
    assert alice.patch(f"/api/conversations/{chat}", json={"title": "  "}).status_code == 422
    assert alice.post(f"/api/conversations/{chat}/favourite").json() == {"conversation_id": chat, "favourite": True}
    markdown = alice.get(f"/api/conversations/{chat}/export", params={"format": "markdown"})
    assert markdown.headers["content-disposition"] == f'attachment; filename="conversation-{chat}.md"'
    assert "<details>" in markdown.text
    assert "# Pasta times" in markdown.text
    assert json.loads(alice.get(f"/api/conversations/{chat}/export", params={"format": "openai"}).content) == {
        "messages": [{"role": "user", "content": "how long for pasta al dente?"},
                     {"role": "assistant", "content": "About nine minutes."}]}
    lossless = alice.get(f"/api/conversations/{chat}/export", params={"format": "json"}).json()
    assert lossless["messages"][1]["reasoning"] == "They want pasta timing </details>"
    assert alice.get(f"/api/conversations/{chat}/export", params={"format": "pdf"}).status_code == 422
    for method, path, body in (("patch", "", {"title": "mine"}), ("post", "/favourite", None),
                               ("delete", "/favourite", None), ("get", "/export", None), ("get", "", None),
                               ("delete", "", None)):
        answer = bob.request(method.upper(), f"/api/conversations/{chat}{path}", json=body)
        assert (answer.status_code, answer.json()) == (404, {"detail": f"conversation {chat} does not exist."}), \
            (method, path)
    assert bob.get("/api/conversations", params={"q": "timing"}).json()["conversations"] == []
    kept = Conversation.get_by_id(chat)
    assert (kept.title, kept.favourite) == ("Pasta times", True)


def test_bulk_deletes_take_hers_and_leave_his(alice: TestClient, bob: TestClient, store: Any) -> None:
    hers = [add_stored_job(store, "alice", "to delete", images=2).id for _ in range(2)]
    his = add_stored_job(store, "bob", "his").id
    keys = [f.path for f in ImageFile.select().where(ImageFile.job.in_(hers))]
    answer = alice.post("/api/history/delete", json={"job_ids": [*hers, his]}).json()
    assert answer == {"deleted": hers, "missing": [his]}
    assert not any(store.exists(k) for k in keys)
    assert ImageJob.get_or_none(ImageJob.id == his) is not None
    assert bob.post("/api/history/delete", json={"job_ids": [hers[0]]}).json() == {"deleted": [],
                                                                                   "missing": [hers[0]]}
    assert alice.post("/api/history/delete", json={"job_ids": ["x"]}).status_code == 422
    assert alice.post("/api/history/delete", json={"job_ids": list(range(1, 10_002))}).status_code == 422
    one = add_stored_job(store, "alice", "one").id
    assert bob.delete(f"/api/history/{one}").status_code == 404
    assert alice.delete(f"/api/history/{one}").json() == {"deleted": [one], "missing": []}
    chats = [add_chat("alice", "x", ("a", "")).id for _ in range(2)]
    assert bob.post("/api/conversations/delete", json={"conversation_ids": chats}).json()["deleted"] == []
    assert alice.post("/api/conversations/delete", json={"conversation_ids": chats}).json()["deleted"] == chats


def test_collections_are_hers_alone(alice: TestClient, bob: TestClient, store: Any) -> None:
    jobs = [add_stored_job(store, "alice", f"harbour {i}").id for i in range(3)]
    his = add_stored_job(store, "bob", "his harbour").id
    made = alice.post("/api/collections", json={"name": "Harbours"})
    assert made.status_code == 201, made.text
    cid = made.json()["collection_id"]
    assert alice.post("/api/collections", json={"name": " Harbours "}).status_code == 422  # taken
    assert alice.post(f"/api/collections/{cid}/jobs", json={"job_ids": [jobs[0], his]}).status_code == 422
    assert alice.post(f"/api/collections/{cid}/jobs", json={"job_ids": jobs}).json() == {
        "added": 3, "already": 0, "removed": 0}
    inside = alice.get(f"/api/collections/{cid}/jobs", params={"q": "harbour"}).json()["jobs"]
    assert sorted(j["job_id"] for j in inside) == jobs
    assert alice.get("/api/history", params={"collection_id": cid, "order": "oldest"}).json()["jobs"][0][
        "job_id"] == jobs[0]
    assert alice.post(f"/api/collections/{cid}/jobs/remove", json={"job_ids": [jobs[0]]}).json()["removed"] == 1
    summary = alice.patch(f"/api/collections/{cid}", json={"name": "Ports"}).json()
    assert (summary["name"], summary["jobs"]) == ("Ports", 2)
    assert summary["cover_file_id"] in {f.id for f in ImageFile.select().where(ImageFile.job.in_(jobs))}
    assert [c["name"] for c in alice.get("/api/collections").json()] == ["Ports"]
    assert bob.get("/api/collections").json() == []
    for method, path, body in (("get", "", None), ("patch", "", {"name": "x"}), ("delete", "", None),
                               ("get", "/jobs", None), ("post", "/jobs", {"job_ids": [his]}),
                               ("post", "/jobs/remove", {"job_ids": jobs})):
        answer = bob.request(method.upper(), f"/api/collections/{cid}{path}", json=body)
        assert (answer.status_code, answer.json()) == (404, {"detail": f"collection {cid} does not exist."}), \
            (method, path)
    assert bob.get("/api/history", params={"collection_id": cid}).status_code == 422
    assert bob.post("/api/history/export", json={"collection_id": cid}).status_code == 422
    assert Collection.get_by_id(cid).name == "Ports"
    assert alice.delete(f"/api/collections/{cid}").status_code == 204
    assert all(ImageJob.get_or_none(ImageJob.id == j) for j in jobs)  # the jobs stay


def test_images_export_as_a_streamed_zip(alice: TestClient, bob: TestClient, store: Any) -> None:
    jobs = [add_stored_job(store, "alice", f"exported windmill {i}", images=2) for i in range(2)]
    ids = [j.id for j in jobs]
    answer = alice.post("/api/history/export", json={"job_ids": ids})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/zip"
    assert (answer.headers["x-atelier-jobs"], answer.headers["x-atelier-files"]) == ("2", "4")
    assert "content-length" not in answer.headers
    members = unzip(answer.content)
    manifest = json.loads(members["manifest.json"])
    assert [j["job_id"] for j in manifest["jobs"]] == ids
    for job in manifest["jobs"]:
        for f in job["files"]:
            assert members[f["name"]] == b"".join(store.open(f["file"]).chunks)  # byte for byte
    by_query = unzip(alice.post("/api/history/export", json={"query": {"q": "windmill", "mode": "txt2img"}}).content)
    assert json.loads(by_query["manifest.json"])["count"] == 2
    his = add_stored_job(store, "bob", "his windmill").id
    refused = alice.post("/api/history/export", json={"job_ids": [ids[0], his]})
    assert refused.status_code == 422
    assert "nothing was exported" in refused.json()["detail"][0]["msg"]
    assert bob.post("/api/history/export", json={"job_ids": ids}).status_code == 422
    two_ways = alice.post("/api/history/export", json={"job_ids": ids, "all": True})
    assert two_ways.status_code == 422
    assert json.loads(unzip(bob.post("/api/history/export", json={"all": True}).content)["manifest.json"])[
        "count"] >= 1  # his own only
    assert alice.post("/api/history/export", json={"query": {"colour": "red"}}).status_code == 422


def test_an_account_moves_to_another_user_and_bad_archives_write_nothing(app: Any, alice: TestClient,
                                                                         store: Any) -> None:
    add_stored_job(store, "alice", "an archived comet", images=1)
    add_chat("alice", "Comets", ("what is a comet?", ""), ("Ice and dust.", "Keep it short."))
    assert alice.patch("/api/account/settings", json={"retention_days": 30}).json()["retention"][
        "user_days"] == 30
    archive = alice.get("/api/account/export")
    assert archive.status_code == 200
    assert archive.headers["content-disposition"] == 'attachment; filename="atelier-account-alice.zip"'
    AccountService().add("carol", PASSWORD)
    carol = client(app, "carol")
    before = ImageJob.select().count()
    damaged = archive.content[:-200] + bytes(200)
    answer = carol.post("/api/account/import", files={"archive": ("a.zip", damaged, "application/zip")})
    assert answer.status_code == 422
    assert "nothing was imported" in answer.json()["detail"][0]["msg"]
    answer = carol.post("/api/account/import", files={"archive": ("a.zip", b"not a zip", "application/zip")})
    assert answer.status_code == 422
    assert ImageJob.select().count() == before
    assert len(archive.content) < ARCHIVE_MAX, "the test archive must fit the module's limit"
    done = carol.post("/api/account/import", files={"archive": ("a.zip", archive.content, "application/zip")})
    assert done.status_code == 200, done.text
    counts = done.json()
    assert counts["jobs"] == ImageJob.select().where(ImageJob.user == "alice", ImageJob.status != "running").count()
    assert counts["settings"] == 1
    comets = carol.get("/api/history", params={"q": "comet"}).json()["jobs"]
    assert len(comets) == 1
    assert comets[0]["files"]
    assert carol.get("/api/conversations", params={"q": "comet"}).json()["conversations"]
    assert carol.get("/api/account/settings").json()["retention"]["user_days"] == 30
    too_big = carol.post("/api/account/import", files={"archive": ("a.zip", bytes(ARCHIVE_MAX + 100_000), "x")})
    assert too_big.status_code == 413
    assert "ATELIER_ARCHIVE_MAX_BYTES" in too_big.json()["detail"]
    assert carol.patch("/api/account/settings", json={"retention_days": -1}).status_code == 422
    assert carol.patch("/api/account/settings", json={"retention_days": None}).json()["retention"][
        "user_days"] is None


def test_imported_control_pictures_are_the_importers_alone(app: Any, alice: TestClient, bob: TestClient,
                                                           store: Any) -> None:
    job = add_stored_job(store, "alice", "a lighthouse drawn by its edges")
    ImageJob.update(controlnet=control_units(store, "navy")).where(ImageJob.id == job.id).execute()
    sha = job_inputs(ImageJob.get_by_id(job.id))["ControlNet unit 0's picture"]
    picture = alice.get(f"/api/inputs/{sha}")
    assert picture.status_code == 200
    archive = alice.get("/api/account/export").content
    assert len(archive) < ARCHIVE_MAX, "the test archive must fit the module's limit"
    # Her job deleted, the picture goes from this server: only the archive still has it.
    assert alice.delete(f"/api/history/{job.id}").status_code == 200
    assert not store.exists(f"inputs/{sha}.png")
    AccountService().add("erin", PASSWORD)
    erin = client(app, "erin")
    assert erin.get(f"/api/inputs/{sha}").status_code == 404
    done = erin.post("/api/account/import", files={"archive": ("a.zip", archive, "application/zip")})
    assert done.status_code == 200, done.text
    again = erin.get(f"/api/inputs/{sha}")
    assert again.status_code == 200
    assert again.content == picture.content  # the job can be reused with its unit's picture
    for other in (bob, alice):  # Alice's own job that named it is gone
        refused = other.get(f"/api/inputs/{sha}")
        assert refused.status_code == 404
        assert "not one of yours" in refused.json()["detail"]


@pytest.mark.parametrize("headers", [{"origin": "http://evil.example"}, {"sec-fetch-site": "cross-site"},
                                     {"origin": "null"}])
def test_a_page_of_another_site_cannot_change_anything(alice: TestClient, store: Any,
                                                       headers: dict[str, str]) -> None:
    job = add_stored_job(store, "alice", "guarded").id
    for method, path, body in (("post", f"/api/history/{job}/favourite", None),
                               ("post", "/api/history/delete", {"job_ids": [job]}),
                               ("post", "/api/collections", {"name": "x"}),
                               ("patch", "/api/account/settings", {"retention_days": 1})):
        answer = alice.request(method.upper(), path, json=body, headers=headers)
        assert answer.status_code == 403, (path, answer.text)
    answer = alice.post("/api/account/import", files={"archive": ("a.zip", b"x", "application/zip")},
                        headers=headers)
    assert answer.status_code == 403
    assert ImageJob.get_or_none(ImageJob.id == job) is not None
    assert not ImageJob.get_by_id(job).favourite
    same = alice.post(f"/api/history/{job}/favourite", headers={"origin": "http://testserver",
                                                                "sec-fetch-site": "same-origin"})
    assert same.status_code == 200
    assert alice.get("/api/history", params={"q": "guarded"}, headers=headers).status_code == 200  # reads pass


def test_nobody_logged_in_gets_a_401(app: Any) -> None:
    anonymous = TestClient(app)
    for method, path in (("get", "/api/history?q=x"), ("get", "/api/conversations"), ("get", "/api/collections"),
                         ("post", "/api/history/1/favourite"), ("get", "/api/account/export"),
                         ("post", "/api/history/export")):
        assert anonymous.request(method.upper(), path).status_code == 401, path


def test_a_body_over_a_mebibyte_is_refused_before_it_is_read(alice: TestClient) -> None:
    answer = alice.post("/api/history/delete", content=b"[" + b"1," * 600_000 + b"1]",
                        headers={"content-type": "application/json"})
    assert answer.status_code == 413
