"""Search (issue 25) on SQLite FTS5 and PostgreSQL tsvector alike: words, phrases, prefixes, OR and NOT, filters,
ranked pages with a cursor, marked matches, one user's rows only; the indexes follow every write; any text typed
into the box is an answer, never an error (fuzzed with hypothesis against a reference evaluation)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import InvalidRequest
from services.search import SearchService
from storage.connections import is_postgres
from storage.db import open_database
from storage.migrations import MIGRATIONS, migrate
from storage.models import Collection, CollectionItem, ImageJob, Message
from storage.query import parse
from tests.services.helpers import add_chat, add_job

search = SearchService()


@pytest.fixture
def db(db_location: Path | str) -> object:
    return open_database(db_location)


def ids(page: dict) -> list[int]:
    return [j["job_id"] for j in page["jobs"]]


def marked(segments: list[dict]) -> list[str]:
    return [s["text"] for s in segments if s["match"]]


def test_words_phrases_prefixes_or_and_not(db: object) -> None:
    cat = add_job("alice", "a red cat on a mat", "blurry")
    cats = add_job("alice", "two cats playing in red light")
    dog = add_job("alice", "a dog in the sun", "cat")
    add_job("bob", "a red cat", "")  # never in alice's results
    assert set(ids(search.images("alice", "cat"))) == {cat.id, cats.id, dog.id}  # "cats" stems to "cat"
    assert ids(search.images("alice", "cat"))[-1] == dog.id  # a negative-prompt word weighs less
    assert ids(search.images("alice", '"red cat"')) == [cat.id]
    assert set(ids(search.images("alice", "pla*"))) == {cats.id}
    assert set(ids(search.images("alice", "cat -mat"))) == {cats.id, dog.id}
    assert set(ids(search.images("alice", "NOT cat"))) == set()
    assert set(ids(search.images("alice", "sun OR mat"))) == {cat.id, dog.id}
    assert set(ids(search.images("alice", "red sun OR mat"))) == {cat.id}
    assert ids(search.images("alice", "")) == [dog.id, cats.id, cat.id]  # newest first without words
    assert ids(search.images("bob", "dog")) == []
    first = search.images("alice", '"red cat"')["jobs"][0]
    assert "".join(marked(first["highlight"]["prompt"])).replace(" ", "") == "redcat"
    assert "".join(s["text"] for s in first["highlight"]["prompt"]) == "a red cat on a mat"


@pytest.mark.parametrize("text", ["", "   ", "\"", "-", "*", "OR", "NOT", "AND OR NOT", "NEAR(a b)", "{prompt}: x",
                                  "a:b", "^x", "'; DROP TABLE imagejob; --", "x" * 5000, "cat " * 400, "%_\\",
                                  "\x00\ue000\ue001", "東京 タワー", "'':* & ! <->"])
def test_any_text_is_an_answer(db: object, text: str) -> None:
    add_job("alice", "a red cat")
    page = search.images("alice", text)
    assert isinstance(page["jobs"], list)
    assert isinstance(search.conversations("alice", text)["conversations"], list)
    assert page["query"]["truncated"] is (len(text) > 1000 or "x" * 101 in text)
    assert ImageJob.select().count() == 1


def test_filters(db: object) -> None:
    day = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    old = add_job("alice", "castle", created_at=day - dt.timedelta(days=10), mode="img2img", sampler="DDIM")
    lora = add_job("alice", "castle <lora:Fluffy_Style:0.7>", created_at=day, model="sd15", width=512, seed_used=77)
    fav = add_job("alice", "castle at night", created_at=day + dt.timedelta(days=1), favourite=True,
                  checkpoint="dream.safetensors", status="failed")
    assert ids(search.images("alice", "castle", since="2026-02-25", until=day)) == []
    assert ids(search.images("alice", "castle", since=day, until="2026-03-02T00:00:00Z")) == [lora.id]
    assert ids(search.images("alice", "", mode="img2img")) == [old.id]
    assert ids(search.images("alice", "", sampler="DDIM")) == [old.id]
    assert ids(search.images("alice", "", model="sd15")) == [lora.id]
    assert ids(search.images("alice", "", model="dream.safetensors")) == [fav.id]
    assert ids(search.images("alice", "", width=512, height=64)) == [lora.id]
    assert ids(search.images("alice", "", seed=77)) == [lora.id]
    assert ids(search.images("alice", "", lora="fluffy_style")) == [lora.id]
    assert ids(search.images("alice", "", lora="Fluffy")) == []  # the whole name, not a part
    assert ids(search.images("alice", "", lora="%")) == []  # LIKE's wildcards are literal
    assert ids(search.images("alice", "castle", favourite=True)) == [fav.id]
    assert ids(search.images("alice", "", status="failed")) == [fav.id]
    mine = Collection.create(user="alice", name="keep")
    CollectionItem.create(collection=mine, job=old)
    assert ids(search.images("alice", "", collection_id=mine.id)) == [old.id]
    with pytest.raises(InvalidRequest, match="collection"):  # another user's collection is no collection
        search.images("bob", "", collection_id=mine.id)


@pytest.mark.parametrize(("filters", "field"), [
    ({"mode": "sketch"}, "mode"), ({"since": "yesterday"}, "since"), ({"width": 0}, "width"),
    ({"seed": -1}, "seed"), ({"seed": 2**40}, "seed"), ({"since": "2026-02-02", "until": "2026-02-01"}, "until"),
    ({"favourite": "maybe"}, "favourite"), ({"order": "random"}, "order"), ({"limit": 0}, "limit"),
    ({"limit": 1.5}, "limit"), ({"cursor": "%%%"}, "cursor"), ({"colour": "red"}, "colour"),
    ({"lora": "x" * 300}, "lora")])
def test_bad_filters_name_the_field(db: object, filters: dict, field: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        search.images("alice", "cat", **filters)
    assert field in refused.value.errors


def test_pages_follow_a_cursor_exactly_once(db: object) -> None:
    made = [add_job("alice", f"cat {'cat ' * (i % 4)}number {i}").id for i in range(23)]
    for order in ("relevance", "newest", "oldest"):
        seen: list[int] = []
        cursor = None
        while True:
            page = search.images("alice", "cat", order=order, limit=5, cursor=cursor)
            seen += ids(page)
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sorted(seen) == sorted(made), order
        assert len(seen) == len(set(seen))
    assert seen == made  # oldest first
    cursor = search.images("alice", "cat", limit=5)["next_cursor"]
    with pytest.raises(InvalidRequest, match="another search"):
        search.images("alice", "dog", limit=5, cursor=cursor)
    with pytest.raises(TypeError):
        search.images(None, "cat")  # type: ignore[arg-type]


def test_conversations_by_message_reasoning_title_and_date(db: object) -> None:
    old = dt.datetime(2026, 1, 10, tzinfo=dt.UTC)
    pasta = add_chat("alice", "Cooking", ("how do I cook pasta al dente?", ""),
                     ("Boil salted water.", "They want pasta timing details."), updated=old)
    marathon = add_chat("alice", "Marathon timing", ("pacing for a marathon", ""), favourite=True)
    add_chat("bob", "pasta for bob", ("pasta pasta", ""))
    hits = search.conversations("alice", "pasta")["conversations"]
    assert [c["conversation_id"] for c in hits] == [pasta.id]
    assert hits[0]["match"]["field"] == "content"
    assert marked(hits[0]["match"]["snippet"]) == ["pasta"]
    assert hits[0]["messages"] == 2
    timing = search.conversations("alice", "timing")["conversations"]
    assert {c["conversation_id"] for c in timing} == {pasta.id, marathon.id}
    by_id = {c["conversation_id"]: c for c in timing}
    assert by_id[pasta.id]["match"]["field"] == "reasoning"
    assert marked(by_id[marathon.id]["title_highlight"]) == ["timing"]
    assert [c["conversation_id"] for c in search.conversations("alice", "timing", reasoning=False)
            ["conversations"]] == [marathon.id]
    assert [c["conversation_id"] for c in search.conversations("alice", "", until="2026-02-01")
            ["conversations"]] == [pasta.id]
    assert [c["conversation_id"] for c in search.conversations("alice", "", favourite=True)
            ["conversations"]] == [marathon.id]
    assert [c["conversation_id"] for c in search.conversations("alice", "-pasta")["conversations"]] == [marathon.id]
    assert search.conversations("bob", "timing")["conversations"] == []


def test_indexes_follow_updates_and_deletes(db: object) -> None:
    job = add_job("alice", "a lighthouse")
    job.prompt = "a windmill"
    job.save()
    assert ids(search.images("alice", "lighthouse")) == []
    assert ids(search.images("alice", "windmill")) == [job.id]
    job.delete_instance(recursive=True)
    assert ids(search.images("alice", "windmill")) == []
    chat = add_chat("alice", "t", ("first words", ""), ("an answer", "some thought"))
    Message.update(content="edited words").where(Message.position == 0).execute()
    assert search.conversations("alice", "first")["conversations"] == []
    assert len(search.conversations("alice", "edited")["conversations"]) == 1
    chat.delete_instance(recursive=True)
    assert search.conversations("alice", "thought")["conversations"] == []
    if not is_postgres():  # every FTS5 index still agrees with its table
        for table in ("imagejob_fts", "message_fts", "conversation_fts"):
            db.execute_sql(f"INSERT INTO {table}({table}, rank) VALUES ('integrity-check', 1)")  # type: ignore


def test_the_migration_indexes_rows_written_before_it(db_location: Path | str) -> None:
    from storage.connections import database, make_database

    early = make_database(db_location)
    database.initialize(early)
    migrate(early, MIGRATIONS[:6])  # an Atelier from before issue 25
    early.execute_sql("INSERT INTO imagejob (\"user\", created_at, backend, model, prompt, width, height, steps, "
                      "cfg_scale, seed, sampler) VALUES ('alice', '2026-01-01 00:00:00+00:00', 'b', 'm', "
                      "'an old harbour', 64, 64, 1, 7, 1, 'Euler')")
    early.close()
    open_database(db_location)
    assert len(search.images("alice", "harbour")["jobs"]) == 1


# --- Fuzz: the databases agree with a reference reading of the parsed query ---------------------------------
VOCAB = ["red", "cat", "dog", "sun", "moon", "fox", "owl", "sky", "gold", "tree"]
DOCS = [" ".join(VOCAB[(i * 7 + k * 3) % len(VOCAB)] for k in range(1 + i % 5)) for i in range(40)]
_piece = st.one_of(
    st.sampled_from(VOCAB), st.sampled_from(VOCAB).map(lambda w: "-" + w),
    st.sampled_from(VOCAB).map(lambda w: w[: 1 + len(w) // 2] + "*"),
    st.lists(st.sampled_from(VOCAB), min_size=2, max_size=3).map(lambda ws: '"' + " ".join(ws) + '"'),
    st.sampled_from(["OR", "AND", "NOT", "|", "(", ")", "^", ":", "{", "}", "NEAR", "'", "&", "!", "<->", "*"]),
    st.text(max_size=6))


def _reference(query_text: str) -> set[str]:
    q = parse(query_text)

    def holds(term: object, doc: str) -> bool:
        words = doc.split()
        tokens = list(term.tokens)  # type: ignore[attr-defined]
        for start in range(len(words) - len(tokens) + 1):
            window = words[start:start + len(tokens)]
            if window[:-1] == tokens[:-1] and (window[-1].startswith(tokens[-1]) if term.prefix  # type: ignore
                                               else window[-1] == tokens[-1]):
                return True
        return False

    return {d for d in DOCS
            if all(any(holds(t, d) for t in group) for group in q.groups) and not any(holds(t, d) for t in q.excluded)}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(_piece, max_size=6))
def test_fuzzed_queries_match_the_reference(db: object, pieces: list[str]) -> None:
    if not ImageJob.select().exists():
        for doc in DOCS:
            add_job("alice", doc)
            add_job("bob", doc)
    text = " ".join(pieces)
    if any(not any(w.startswith(tok) for w in VOCAB) for tok in re.findall(r"[^\W_]+", text.lower())):
        found = search.images("alice", text, limit=200)  # stray letters: only no error is asked
        assert all(j["prompt"] in DOCS for j in found["jobs"])
        return
    found = search.images("alice", text, limit=200)
    assert {j["prompt"] for j in found["jobs"]} == _reference(text)
    assert all(ImageJob.get_by_id(j["job_id"]).user == "alice" for j in found["jobs"])
