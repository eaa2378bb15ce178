"""The History tab's search, organise, export and account handlers (ui/history_*.py), called as the UI calls them, with
two users: Alice finds, marks, collects, exports and moves her work; Bob, asking for the same, gets only his own;
bad input is a toast naming the field, and nothing is written."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr
import pytest
from starlette.routing import Mount

from api.server import create_app
from services.accounts import AccountService
from settings import Settings
from storage.db import open_database
from storage.models import Collection, Conversation, ImageFile, ImageJob
from tests.services.helpers import add_chat, add_stored_job
from ui.history_account import AccountActions
from ui.history_conversations import ConversationActions
from ui.history_search import EXPORT_WAYS, HistorySearch, stream_to_file

ALICE, BOB = SimpleNamespace(username="alice"), SimpleNamespace(username="bob")
NO_FILTERS = ("", "", None, None, None, "", "", False, None, "relevance")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    config = Settings(profile="tiny", data_dir=tmp_path_factory.mktemp("data"), warmup=False)
    config.ensure_dirs()
    open_database(config.db_path)
    for name in ("alice", "bob", "carol"):
        AccountService().add(name, "correct horse battery")
    return create_app(config)  # the UI is built too: its events must all wire up


@pytest.fixture(scope="module")
def services(app: Any) -> Any:
    return app.state.services


def endpoint(app: Any, api_name: str) -> Any:
    """The function of a named Gradio API endpoint."""
    gradio_app = next(r.app for r in app.routes if isinstance(r, Mount) and r.path == "")
    return next(f.fn for f in gradio_app.get_blocks().fns.values() if f.api_name == api_name)


def last(generator: Any) -> Any:
    *_, final = generator
    return final


def test_search_finds_hers_marked_and_bob_sees_none(services: Any) -> None:
    store = services.history.store
    cats = [add_stored_job(store, "alice", f"a ginger cat {i}").id for i in range(3)]
    add_stored_job(store, "bob", "bob's ginger cat")
    ui = HistorySearch(services)
    thumbs, rows, ids, status, cursor, _ = ui.find("ginger cat", *NO_FILTERS, ALICE)
    assert sorted(ids) == cats
    assert all("«ginger» «cat»" in row[3] for row in rows)
    assert "3 job(s)" in status
    assert len(thumbs) == 3
    assert cursor is None
    _, _, his, *_ = ui.find("ginger cat", *NO_FILTERS, BOB)
    assert his
    assert not set(his) & set(cats)
    first = ui.find("ginger", *NO_FILTERS[:-1], "oldest", ALICE)
    assert first[2][0] == cats[0]


@pytest.mark.parametrize(("filters", "field"), [({"since": "yesterday"}, "since"), ({"mode": "sketch"}, "mode"),
                                               ({"seed": "-3"}, "seed"), ({"seed": "x"}, "seed")])
def test_a_bad_filter_is_a_toast_naming_it(services: Any, filters: dict[str, Any], field: str) -> None:
    names = ["since", "until", "model", "mode", "sampler", "seed", "lora", "favourites", "collection", "order"]
    values = dict(zip(names, NO_FILTERS, strict=True)) | filters
    with pytest.raises(gr.Error, match=f"{field}:"):
        HistorySearch(services).find("cat", *values.values(), ALICE)


def test_favourites_and_collections_are_hers_alone(services: Any) -> None:
    job = add_stored_job(services.history.store, "alice", "a lighthouse at dusk").id
    ui = HistorySearch(services)
    details = services.history.get_job(job, "alice")
    with pytest.raises(gr.Error, match="not one of yours"):
        ui.toggle_favourite(details, BOB)
    assert not ImageJob.get_by_id(job).favourite
    assert ui.toggle_favourite(details, ALICE)["favourite"] is True
    favourites = ui.find("", "", "", None, None, None, "", "", True, None, "relevance", ALICE)[2]
    assert favourites == [job]
    with pytest.raises(gr.Error, match="job_ids"):
        ui.collect(details, "Bob's lights", BOB)  # his collection is made, her job is refused: nothing added
    assert not Collection.select().where(Collection.user == "bob").exists()
    ui.collect(details, "  Lights ", ALICE)
    mine = services.collections.list("alice")
    assert [(c["name"], c["jobs"]) for c in mine] == [("Lights", 1)]
    found = ui.find("", "", "", None, None, None, "", "", False, mine[0]["collection_id"], "newest", ALICE)[2]
    assert found == [job]
    with pytest.raises(gr.Error, match="collection_id"):
        ui.find("", "", "", None, None, None, "", "", False, mine[0]["collection_id"], "newest", BOB)
    ui.take_out(details, "Lights", ALICE)
    assert services.collections.list("alice")[0]["jobs"] == 0


def test_exports_stream_to_a_file_with_their_progress(services: Any) -> None:
    store = services.history.store
    ids = [add_stored_job(store, "alice", f"an exported windmill {i}", images=2).id for i in range(2)]
    ui = HistorySearch(services)
    steps = list(ui.export(EXPORT_WAYS[1], None, "windmill", *NO_FILTERS, ALICE))
    status, path = steps[-1]
    assert all(p is None for _, p in steps[:-1])  # no file is offered before it is whole
    assert "Exported 2 job(s)" in status
    with zipfile.ZipFile(path) as z:
        manifest = json.loads(z.read("manifest.json"))
        assert sorted(j["job_id"] for j in manifest["jobs"]) == ids
        for member in manifest["jobs"][0]["files"]:
            assert z.read(member["name"]) == b"".join(store.open(member["file"]).chunks)
    his = last(ui.export(EXPORT_WAYS[3], None, "", *NO_FILTERS, BOB))[1]
    with zipfile.ZipFile(his) as z:
        assert not set(ids) & {j["job_id"] for j in json.loads(z.read("manifest.json"))["jobs"]}
    with pytest.raises(gr.Error, match="Select a job"):
        last(ui.export(EXPORT_WAYS[0], None, "", *NO_FILTERS, ALICE))
    alices = services.history.get_job(ids[0], "alice")
    with pytest.raises(gr.Error, match="nothing was exported"):
        last(ui.export(EXPORT_WAYS[0], alices, "", *NO_FILTERS, BOB))


def test_conversations_search_rename_favourite_export(services: Any) -> None:
    chat = add_chat("alice", "Cooking", ("how long for pasta?", ""), ("Nine minutes.", "pasta timing")).id
    ui = ConversationActions(services)
    rows = ui.find("pasta", True, False, ALICE)
    assert [r[0] for r in rows] == [chat]
    assert "«pasta»" in rows[0][4]
    assert ui.find("timing", False, False, ALICE) == []
    assert ui.find("pasta", True, False, BOB) == []
    assert ui.rename(chat, "  Pasta  times ", ALICE) == "Pasta times"
    with pytest.raises(gr.Error, match="title"):
        ui.rename(chat, "   ", ALICE)
    for act in (lambda: ui.rename(chat, "mine", BOB), lambda: ui.toggle_favourite(chat, BOB),
                lambda: ui.export(chat, "json", BOB), lambda: ui.delete_conversation(chat, BOB)):
        with pytest.raises(gr.Error):
            act()
    ui.toggle_favourite(chat, ALICE)
    assert ui.find("", True, True, ALICE)[0][1] == "★ Pasta times"
    markdown = Path(ui.export(chat, "markdown", ALICE)).read_text()
    assert "# Pasta times" in markdown
    assert "<details>" in markdown
    kept = Conversation.get_by_id(chat)
    assert (kept.title, kept.favourite) == ("Pasta times", True)
    ui.delete_conversation(chat, ALICE)
    assert Conversation.get_or_none(Conversation.id == chat) is None


def test_the_account_moves_to_carol_and_a_bad_archive_writes_nothing(services: Any, tmp_path: Path) -> None:
    add_stored_job(services.history.store, "alice", "an archived comet")
    ui = AccountActions(services)
    steps = list(ui.export(ALICE))
    archive = steps[-1][1]
    carol = SimpleNamespace(username="carol")
    before = ImageJob.select().count()
    broken = tmp_path / "broken.zip"
    data = Path(archive).read_bytes()
    broken.write_bytes(data[:-300] + bytes(300))
    with pytest.raises(gr.Error, match="nothing was imported"):
        ui.import_archive(str(broken), carol)
    with pytest.raises(gr.Error, match="Choose an account archive"):
        ui.import_archive(None, carol)
    assert ImageJob.select().count() == before
    assert "Imported" in ui.import_archive(archive, carol)
    assert ImageJob.select().where(ImageJob.user == "carol").count() == \
        ImageJob.select().where(ImageJob.user == "alice", ImageJob.status != "running").count()
    assert HistorySearch(services).find("comet", *NO_FILTERS, carol)[2]
    line, days = ui.save_retention(30, carol)
    assert days == 30
    assert "your own limit: 30 days" in line
    with pytest.raises(gr.Error, match="retention_days"):
        ui.save_retention(-5, carol)
    assert ui.retention(carol)[1] == 30
    assert ui.save_retention(None, carol)[1] is None
    assert ui.save_retention(30, carol)[1] == 30
    assert ui.save_retention(0, carol)[1] is None
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert "manifest.json" in z.namelist()


def test_an_export_that_fails_half_way_leaves_no_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))

    def chunks() -> Any:
        yield b"PK" * 1000
        raise OSError("the store went away")

    export = SimpleNamespace(filename="half.zip", total=2, done=1, missing=[], chunks=chunks())
    with pytest.raises(OSError, match="went away"):
        list(stream_to_file(export))
    assert not list(tmp_path.rglob("half.zip"))


def test_deleting_many_takes_her_results_with_their_files_and_nothing_of_bobs(services: Any) -> None:
    store = services.history.store
    doomed = [add_stored_job(store, "alice", f"a doomed sandcastle {i}", images=2).id for i in range(2)]
    kept = add_stored_job(store, "alice", "a kept sandcastle").id
    his = add_stored_job(store, "bob", "his doomed sandcastle").id
    keys = [f.path for f in ImageFile.select().where(ImageFile.job.in_(doomed))]
    ui = HistorySearch(services)
    with pytest.raises(gr.Error, match="Yes, delete them"):
        ui.delete_chosen(False, EXPORT_WAYS[1], None, "doomed", *NO_FILTERS, ALICE)
    assert ImageJob.select().where(ImageJob.id.in_(doomed)).count() == 2
    hers = services.history.get_job(kept, "alice")
    with pytest.raises(gr.Error, match="nothing was deleted"):
        ui.delete_chosen(True, EXPORT_WAYS[0], hers, "", *NO_FILTERS, BOB)
    status, sure = ui.delete_chosen(True, EXPORT_WAYS[1], None, "doomed", *NO_FILTERS, ALICE)
    assert (status, sure) == ("Deleted 2 job(s) and their images.", False)
    assert ImageJob.select().where(ImageJob.id.in_(doomed)).count() == 0
    assert not any(store.exists(k) for k in keys)
    assert ImageJob.get_or_none(ImageJob.id == kept) is not None
    assert ImageJob.get_or_none(ImageJob.id == his) is not None


def test_the_named_api_searches_the_callers_own_work(app: Any, services: Any) -> None:
    job = add_stored_job(services.history.store, "alice", "a named api puffin").id
    add_stored_job(services.history.store, "bob", "bob's named api puffin")
    chat = add_chat("alice", "Puffins", ("where do puffins nest?", ""), ("On cliffs.", "")).id
    search_history, search_conversations = endpoint(app, "search_history"), endpoint(app, "search_conversations")
    found = search_history(q="puffin", mode="txt2img", request=ALICE)
    assert [j["job_id"] for j in found["jobs"]] == [job]
    assert [s["text"] for s in found["jobs"][0]["highlight"]["prompt"] if s["match"]] == ["puffin"]
    assert all(j["job_id"] != job for j in search_history(q="puffin", request=BOB)["jobs"])
    assert [c["conversation_id"] for c in search_conversations(q="puffins", request=ALICE)["conversations"]] == [chat]
    assert search_conversations(q="puffins", request=BOB)["conversations"] == []
    with pytest.raises(gr.Error, match="since:"):
        search_history(q="puffin", since="last week", request=ALICE)
    with pytest.raises(gr.Error, match="order:"):
        search_conversations(q="puffin", order="loudest", request=ALICE)


def event(app: Any, name: str) -> Any:
    """The handler of the History tab's collection event `name` (a CollectionActions method), as Gradio runs it."""
    gradio_app = next(r.app for r in app.routes if isinstance(r, Mount) and r.path == "")
    return next(f.fn for f in gradio_app.get_blocks().fns.values()
                if getattr(f.fn, "__name__", "") == name and type(getattr(f.fn, "__self__", None)).__name__
                == "CollectionActions")


def test_a_collection_is_renamed_and_deleted_by_her_alone(app: Any, services: Any) -> None:
    job = add_stored_job(services.history.store, "alice", "a heron at dawn").id
    herons = services.collections.create("alice", "Herons")["collection_id"]
    services.collections.add("alice", herons, [job])
    services.collections.create("alice", "Egrets")
    rename, delete = event(app, "rename"), event(app, "delete")
    with pytest.raises(gr.Error, match="collection_id: collection .* does not exist"):
        rename(herons, "Bob's now", BOB)
    with pytest.raises(gr.Error, match="collection_id: collection .* does not exist"):
        delete(True, herons, BOB)
    for bad, why in (("  ", "name: name must not be empty"), ("Egrets", "name: you already have")):
        with pytest.raises(gr.Error, match=why):
            rename(herons, bad, ALICE)
    with pytest.raises(gr.Error, match="Choose a collection"):
        rename(None, "Grey herons", ALICE)
    assert Collection.get_by_id(herons).name == "Herons"  # nothing the refusals asked for was done

    shown = rename(herons, "  Grey   herons ", ALICE)
    assert Collection.get_by_id(herons).name == "Grey herons"
    assert ("Grey herons (1)", herons) in shown.choices
    assert shown.value == herons
    with pytest.raises(gr.Error, match="Tick"):
        delete(False, herons, ALICE)
    assert Collection.get_or_none(Collection.id == herons) is not None
    shown, sure = delete(True, herons, ALICE)
    assert Collection.get_or_none(Collection.id == herons) is None
    assert shown.value is None
    assert sure is False
    assert herons not in [value for _, value in shown.choices]
    assert ImageJob.get_or_none(ImageJob.id == job) is not None  # its job stays in her history
