"""Export and import (issue 25): conversations as Markdown, JSON and OpenAI messages; images as a streamed zip with a
manifest; a whole account exported and imported into another account with every row and every image byte kept;
damaged, foreign, unsafe archives and bad images refused with nothing written; another user's items refused."""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from contracts import InvalidRequest
from services.archive import job_inputs
from services.export import row_to_json
from storage.blobs import LocalStore
from storage.db import open_database
from storage.files import parse_parameters
from storage.models import ALL_MODELS, Collection, Conversation, ImageFile, ImageJob, Message, input_path
from tests.services.helpers import Kit, add_chat, add_job, add_stored_job, control_units, make_kit


@pytest.fixture
def kit(db_location: Path | str, tmp_path: Path) -> Kit:
    open_database(db_location)
    return make_kit(LocalStore(tmp_path / "images"))


def unzip(chunks: Any) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(b"".join(chunks))) as z:
        assert z.testzip() is None
        return {name: z.read(name) for name in z.namelist()}


def test_a_conversation_in_three_formats(kit: Kit) -> None:
    chat = add_chat("alice", "Pasta", ("How long to boil?", ""), ("About 9 minutes.", "Dente </details> check"))
    Message.create(conversation=chat, position=2, role="user", content="And rice?")
    Message.create(conversation=chat, position=3, role="assistant", content="", status="failed", error="boom")
    name, media, body = kit.exports.conversation("alice", chat.id, "markdown")
    text = body.decode()
    assert name.endswith(".md")
    assert media.startswith("text/markdown")
    assert text.startswith("# Pasta")
    assert "## You\n\nHow long to boil?" in text
    assert "<details>\n<summary>Reasoning</summary>\n\nDente &lt;/details> check\n\n</details>" in text
    assert "*Failed: boom*" in text
    _, _, raw = kit.exports.conversation("alice", chat.id, "openai")
    assert json.loads(raw) == {"messages": [
        {"role": "user", "content": "How long to boil?"}, {"role": "assistant", "content": "About 9 minutes."},
        {"role": "user", "content": "And rice?"}]}  # the failed reply and every reasoning left out
    _, _, raw = kit.exports.conversation("alice", chat.id, "json")
    data = json.loads(raw)
    assert data["conversation"]["title"] == "Pasta"
    assert [m["reasoning"] for m in data["messages"]][:2] == ["", "Dente </details> check"]
    assert data["messages"] == [row_to_json(m) for m in chat.messages.order_by(Message.position)]  # every column
    for user, fmt in (("bob", "json"), ("alice", "pdf")):
        with pytest.raises(InvalidRequest):
            kit.exports.conversation(user, chat.id, fmt)


def test_images_stream_as_a_zip_with_a_manifest(kit: Kit) -> None:
    jobs = [add_stored_job(kit.store, "alice", f"a lighthouse {i}", images=1 + i) for i in range(3)]
    bob = add_stored_job(kit.store, "bob", "bob's lighthouse")
    ids = kit.exports.job_ids("alice", job_ids=[jobs[2].id, jobs[0].id])
    export = kit.exports.images_zip("alice", ids)
    assert export.total == 2
    chunks, progress = [], []
    for chunk in export.chunks:
        chunks.append(chunk)
        progress.append(export.done)
    assert progress[0] == 0  # bytes flow before the export is over: it streams
    assert export.done == 2
    assert max(len(c) for c in chunks) < 64 * 1024  # one image at a time, never the whole zip
    members = unzip(chunks)
    manifest = json.loads(members.pop("manifest.json"))
    assert manifest["format"] == "atelier-images"
    assert [j["job_id"] for j in manifest["jobs"]] == sorted(ids)
    stored = {f.path: kit.store.local_path(f.path).read_bytes() for j in jobs for f in j.files}
    listed = {f["name"]: f for j in manifest["jobs"] for f in j["files"]}
    assert set(listed) == set(members)
    assert len(members) == 4  # job 0 has one image, job 2 three
    for name, data in members.items():
        assert data == stored[listed[name]["file"]]  # byte for byte
        assert listed[name]["sha256"] == hashlib.sha256(data).hexdigest()
        assert parse_parameters(Image.open(io.BytesIO(data)).info["parameters"])["Prompt"].startswith("a lighthouse")
    with pytest.raises(InvalidRequest, match=str(bob.id)):
        kit.exports.job_ids("alice", job_ids=[jobs[0].id, bob.id])
    cid = kit.collections.create("alice", "c")["collection_id"]
    kit.collections.add("alice", cid, [jobs[1].id])
    assert kit.exports.job_ids("alice", collection_id=cid) == [jobs[1].id]
    with pytest.raises(InvalidRequest):
        kit.exports.job_ids("bob", collection_id=cid)
    assert kit.exports.job_ids("alice", query={"q": "lighthouse 1"}) == [jobs[1].id]
    assert sorted(kit.exports.job_ids("alice", everything=True)) == [j.id for j in jobs]
    with pytest.raises(InvalidRequest, match="one way"):
        kit.exports.job_ids("alice", job_ids=[jobs[0].id], everything=True)


def _account(kit: Kit, user: str) -> None:
    """A full account: jobs (one with an input image, one with two ControlNet pictures, a favourite), a collection,
    chats, a setting."""
    jobs = [add_stored_job(kit.store, user, f"castle {i}", images=2 if i == 0 else 1, inputs=i == 1,
                           favourite=i == 2, negative_prompt="blurry") for i in range(3)]
    ImageJob.update(controlnet=control_units(kit.store, "red", "green")).where(ImageJob.id == jobs[2].id).execute()
    ImageJob.update(extra=json.dumps({"device": "cpu"}), cache_key="k" * 64).where(ImageJob.id == jobs[0].id).execute()
    cid = kit.collections.create(user, "best")["collection_id"]
    kit.collections.add(user, cid, [jobs[2].id, jobs[0].id])
    chat = add_chat(user, "plans", ("what now?", ""), ("sleep", "they seem tired"), favourite=True)
    Message.update(params=json.dumps({"temperature": 0.6}), prompt_tokens=5, reasoning_s=1.5).where(
        Message.conversation == chat).execute()
    add_chat(user, "empty")
    kit.settings.set(user, "retention_days", 90)


def snapshot(kit: Kit, user: str) -> dict[str, Any]:
    """Everything a user owns, without ids, owner, replica or store keys; images by their bytes."""
    jobs = []
    for job in ImageJob.select().where(ImageJob.user == user).order_by(ImageJob.created_at, ImageJob.id):
        files = [(row_to_json(f, skip=("path",)), kit.store.local_path(f.path).read_bytes())
                 for f in job.files.order_by(ImageFile.index)]
        inputs = {what: kit.store.local_path(input_path(sha)).read_bytes() for what, sha in job_inputs(job).items()}
        jobs.append((row_to_json(job, skip=("user", "replica")), files, inputs))
    chats = [(row_to_json(c, skip=("user",)), [row_to_json(m) for m in c.messages.order_by(Message.position)])
             for c in Conversation.select().where(Conversation.user == user).order_by(Conversation.id)]
    collections = [(c.name, sorted(ImageJob.get_by_id(i.job_id).prompt for i in c.items))
                   for c in Collection.select().where(Collection.user == user)]
    return {"jobs": jobs, "chats": chats, "collections": collections, "settings": kit.settings.all(user)}


def test_an_account_round_trips_with_nothing_lost(kit: Kit, tmp_path: Path) -> None:
    _account(kit, "alice")
    add_stored_job(kit.store, "bob", "bob's own")
    export = kit.archive.export("alice")
    path = tmp_path / export.filename
    path.write_bytes(b"".join(export.chunks))
    assert export.done == export.total == 3
    counts = kit.archive.import_archive("carol", path)
    assert counts == {"jobs": 3, "images": 4, "conversations": 2, "messages": 2, "collections": 1, "settings": 1}
    before, after = snapshot(kit, "alice"), snapshot(kit, "carol")
    assert after == before  # every column of every row, every image byte
    assert len(before["jobs"]) == 3
    assert [sorted(inputs) for _, _, inputs in before["jobs"]] == [
        [], ["init image"], ["ControlNet unit 0's picture", "ControlNet unit 1's picture"]]
    assert before["jobs"][0][1][0][1].startswith(b"\x89PNG")
    assert kit.search.images("carol", "castle")["jobs"]  # and the imports are searchable
    assert kit.archive.import_archive("alice", path)["jobs"] == 3  # into the same account: added again, one set
    assert [c["jobs"] for c in kit.collections.list("alice")] == [4]


def _rebuilt(source: Path, change: Callable[[dict[str, bytes]], None], keep_manifest: bool = False) -> bytes:
    """The archive with `change` applied to its members and (unless kept) a manifest that vouches for them."""
    with zipfile.ZipFile(source) as z:
        members = {n: z.read(n) for n in z.namelist()}
    change(members)
    if not keep_manifest and "manifest.json" in members:
        manifest = json.loads(members["manifest.json"])
        manifest["members"] = {n: {"size": len(d), "sha256": hashlib.sha256(d).hexdigest()}
                               for n, d in members.items() if n != "manifest.json"}
        members["manifest.json"] = json.dumps(manifest).encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return out.getvalue()


def _png(size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("L", size).save(out, "PNG")
    return out.getvalue()


def _first_image(m: dict[str, bytes]) -> str:
    return next(n for n in m if n.startswith("images/"))


def _control(m: dict[str, bytes]) -> str:
    """The member name of the first ControlNet picture the jobs name."""
    found = re.search(rb"inputs/[0-9a-f]{64}\.png", m["jobs.jsonl"])
    assert found, "the account has a ControlNet job"
    return found.group().decode()


def _swap_control(m: dict[str, bytes], data: bytes) -> None:
    """The first ControlNet picture replaced by `data`, under its digest, and the job naming it so."""
    old = _control(m)
    new = f"inputs/{hashlib.sha256(data).hexdigest()}.png"
    del m[old]
    m[new] = data
    m["jobs.jsonl"] = m["jobs.jsonl"].replace(old.encode(), new.encode())


BAD_ARCHIVES: dict[str, tuple[Callable[[dict[str, bytes]], None], str]] = {
    "zip slip": (lambda m: m.update({"../../evil.png": b"x"}), "outside its layout, or outside its root"),
    "absolute path": (lambda m: m.update({"/etc/cron.d/x": b"x"}), "outside its root"),
    "foreign": (lambda m: m.update({"manifest.json": json.dumps({"format": "other"}).encode()}),
                "not an Atelier account archive"),
    "no manifest": (lambda m: m.pop("manifest.json"), "not an Atelier account archive"),
    "newer": (lambda m: m.update({"manifest.json": m["manifest.json"].replace(b'"version": 1', b'"version": 9')}),
              "format version 9"),
    "not json": (lambda m: m.update({"collections.json": b"{"}), "not valid JSON"),
    "unknown field": (lambda m: m.update({"jobs.jsonl": m["jobs.jsonl"].replace(b'"prompt"', b'"prompt2"', 1)}),
                      "no field"),
    "wrong type": (lambda m: m.update({"jobs.jsonl": m["jobs.jsonl"].replace(b'"steps": 1', b'"steps": "1"', 1)}),
                   "wrong kind"),
    "running job": (lambda m: m.update({"jobs.jsonl": m["jobs.jsonl"].replace(b'"done"', b'"running"', 1)}),
                    "wrong kind"),
    "not a png": (lambda m: m.update({_first_image(m): b"GIF89a" + b"\0" * 40}), "fails the upload checks"),
    "too many pixels": (lambda m: m.update({_first_image(m): _png((5000, 4000))}), "fails the upload checks"),
    "cut off png": (lambda m: m.update({_first_image(m): m[_first_image(m)][:-30]}), "cannot be decoded"),
    "stray file": (lambda m: m.update({"images/999-0.png": _png((8, 8))}), "no row names"),
    "control picture missing": (lambda m: m.pop(_control(m)), "ControlNet unit 0's picture .* is not in the archive"),
    "control picture outside": (lambda m: m.update({"jobs.jsonl": m["jobs.jsonl"].replace(
        _control(m).encode(), b"../../secrets.png")}), "unit 0's picture '../../secrets.png' is not an inputs/"),
    "control picture elsewhere": (lambda m: m.update({"jobs.jsonl": m["jobs.jsonl"].replace(
        _control(m).encode(), b"/etc/passwd")}), "is not an inputs/<sha256>.png"),
    "control picture not an image": (lambda m: _swap_control(m, b"GIF89a" + b"\0" * 40), "fails the upload checks"),
    "control picture too large": (lambda m: _swap_control(m, _png((5000, 4000))), "fails the upload checks"),
    "control picture altered": (lambda m: m.update({_control(m): _png((8, 8))}), "not the picture its name says"),
    "control picture unnamed": (lambda m: m.update({f"inputs/{'0' * 64}.png": _png((8, 8))}), "no row names"),
    "too many units": (lambda m: m.update({"jobs.jsonl": m["jobs.jsonl"].replace(
        b'\\"image\\": \\"\\"}]', b'\\"image\\": \\"\\"}' + b', {}' * 4 + b']')}), "at most 4 units"),
    "foreign job in a collection": (lambda m: m.update({"collections.json": json.dumps([{"collection": {
        "name": "x", "created_at": "2026-01-01T00:00:00+00:00", "updated_at": "2026-01-01T00:00:00+00:00"},
        "items": [{"job": 1, "added_at": "2026-01-01T00:00:00+00:00"}]}]).encode()}), "does not hold"),
}


def _state(kit: Kit, root: Path) -> tuple[Any, ...]:
    return (tuple(m.select().count() for m in ALL_MODELS), sorted(p for p in root.rglob("*") if p.is_file()))


@pytest.mark.parametrize("case", list(BAD_ARCHIVES))
def test_a_bad_archive_is_refused_and_nothing_is_written(kit: Kit, tmp_path: Path, case: str) -> None:
    _account(kit, "alice")
    bob = add_job("bob", "bob's")
    path = tmp_path / "account.zip"
    path.write_bytes(b"".join(kit.archive.export("alice").chunks))
    change, message = BAD_ARCHIVES[case]
    if case == "foreign job in a collection":  # the number of one of Bob's jobs, not of the archive's
        def change(m: dict[str, bytes]) -> None:
            BAD_ARCHIVES[case][0](m)
            m["collections.json"] = m["collections.json"].replace(b'"job": 1', f'"job": {bob.id + 1000}'.encode())
    bad = tmp_path / "bad.zip"
    bad.write_bytes(_rebuilt(path, change))
    before = _state(kit, tmp_path / "images")
    with pytest.raises(InvalidRequest, match=message) as refused:
        kit.archive.import_archive("carol", bad)
    assert "nothing was imported" in refused.value.errors["archive"]
    assert _state(kit, tmp_path / "images") == before


def test_damage_bombs_and_non_zips_are_refused(kit: Kit, tmp_path: Path) -> None:
    _account(kit, "alice")
    path = tmp_path / "account.zip"
    path.write_bytes(b"".join(kit.archive.export("alice").chunks))
    before = _state(kit, tmp_path / "images")

    def flip(m: dict[str, bytes]) -> None:
        name = _first_image(m)
        m[name] = m[name][:-20] + bytes(20)

    cases = {
        "altered": (_rebuilt(path, flip, keep_manifest=True), "not what the manifest says"),
        "bomb": (_rebuilt(path, lambda m: m.update({"conversations.jsonl": b" " * (40 * 1024 * 1024)})),
                 "zip bomb"),
        "not a zip": (b"PK\x03\x04 but not really" * 10, "not a zip archive"),
        "empty": (b"", "not a zip archive"),
    }
    for name, (data, message) in cases.items():
        bad = tmp_path / f"{name}.zip"
        bad.write_bytes(data)
        with pytest.raises(InvalidRequest, match=message):
            kit.archive.import_archive("carol", bad)
    small = make_kit(kit.store, max_bytes=1_000)
    with pytest.raises(InvalidRequest, match="at most 1,000 are allowed"):
        small.archive.import_archive("carol", path)
    assert _state(kit, tmp_path / "images") == before


def test_control_pictures_travel_to_another_server_for_the_importer_alone(kit: Kit, tmp_path: Path) -> None:
    _account(kit, "alice")
    path = tmp_path / "account.zip"
    path.write_bytes(b"".join(kit.archive.export("alice").chunks))
    there = make_kit(LocalStore(tmp_path / "other-server"))  # another store: nothing of Alice's pictures in it
    there.archive.import_archive("carol", path)
    mine = ImageJob.get((ImageJob.user == "alice") & (ImageJob.controlnet.contains("inputs/")))
    theirs = ImageJob.get((ImageJob.user == "carol") & (ImageJob.controlnet.contains("inputs/")))
    assert theirs.controlnet == mine.controlnet
    pictures = job_inputs(theirs)
    assert len(pictures) == 2
    for sha in pictures.values():
        key = there.history.input_key(sha, "carol")  # what GET /api/inputs/{sha} sends her, to reuse the job
        assert key == input_path(sha)
        assert there.store.local_path(key).read_bytes() == kit.store.local_path(key).read_bytes()
        assert there.history.input_key(sha, "bob") is None


def test_a_control_picture_gone_from_the_store_is_left_out_and_the_archive_still_imports(kit: Kit,
                                                                                          tmp_path: Path) -> None:
    _account(kit, "alice")
    job = ImageJob.get((ImageJob.user == "alice") & (ImageJob.controlnet.contains("inputs/")))
    gone = job_inputs(job)["ControlNet unit 1's picture"]
    kit.store.delete(input_path(gone))
    export = kit.archive.export("alice")
    path = tmp_path / "account.zip"
    path.write_bytes(b"".join(export.chunks))
    assert export.missing == [input_path(gone)]
    kit.archive.import_archive("carol", path)
    theirs = ImageJob.get((ImageJob.user == "carol") & (ImageJob.controlnet.contains("inputs/")))
    assert list(job_inputs(theirs)) == ["ControlNet unit 0's picture"]  # as a unit without a picture
    assert [u["module"] for u in json.loads(theirs.controlnet)] == ["canny", "canny", "none"]
