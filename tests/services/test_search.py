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
from storage.models import Collection, CollectionItem, Conversation, ImageJob, Message
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
@given(pieces=st.lists(_piece, max_size=6), cap=st.sampled_from([0, 3000]))
def test_fuzzed_queries_match_the_reference(db: object, pieces: list[str], cap: int) -> None:
    """Ranked (cap 3000), or walked newest first (cap 0: every search has too many matches to rank)."""
    from storage import search as storage_search

    if not ImageJob.select().exists():
        for doc in DOCS:
            add_job("alice", doc)
            add_job("bob", doc)
    text = " ".join(pieces)
    original = storage_search.RANK_AT_MOST
    storage_search.RANK_AT_MOST = cap
    try:
        found = search.images("alice", text, limit=200)
    finally:
        storage_search.RANK_AT_MOST = original
    if any(not any(w.startswith(tok) for w in VOCAB) for tok in re.findall(r"[^\W_]+", text.lower())):
        assert all(j["prompt"] in DOCS for j in found["jobs"])  # stray letters: only no error is asked
        return
    assert {j["prompt"] for j in found["jobs"]} == _reference(text), (text, cap)
    assert all(ImageJob.get_by_id(j["job_id"]).user == "alice" for j in found["jobs"])


# --- Many matches: newest first, said so, paged by the walk -------------------------------------------------
@pytest.fixture
def small_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rank at most 3 matches and walk 2 rows at a first chunk: the big-history paths on a handful of rows."""
    from storage import search as storage_search

    monkeypatch.setattr(storage_search, "RANK_AT_MOST", 3)
    monkeypatch.setattr(storage_search, "FIRST_CHUNK", 2)


def _all_pages(method: str, text: str, limit: int, **filters: object) -> tuple[list[int], list[dict]]:
    seen: list[int] = []
    pages = []
    cursor = None
    while True:
        page = getattr(search, method)("alice", text, limit=limit, cursor=cursor, **filters)
        pages.append(page)
        key = "jobs" if method == "images" else "conversations"
        seen += [item["job_id" if key == "jobs" else "conversation_id"] for item in page[key]]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen, pages


def test_many_matches_come_newest_first_and_say_so(db: object, small_cap: None) -> None:
    day = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    cats = []
    for i in range(9):
        add_job("bob", "a cat", created_at=day + dt.timedelta(hours=i))
        add_job("alice", "a dog", created_at=day + dt.timedelta(hours=i))
        night = " at night" if i % 3 == 0 else ""
        cats.append(add_job("alice", f"a cat{night}", created_at=day + dt.timedelta(hours=i, minutes=1)).id)
    # An imported job: an old date with a new id (the walk's id ranges are then wide, never wrong).
    cats.append(add_job("alice", "an old cat", created_at=day - dt.timedelta(days=30)).id)
    newest = [*cats[-2::-1], cats[-1]]
    page = search.images("alice", "cat")
    assert page["order"] == "newest"
    assert "More than 3 matches" in page["note"]
    assert ids(page) == newest
    for limit in (1, 3, 20):
        seen, pages = _all_pages("images", "cat", limit)
        assert seen == newest, limit
        assert all(p["order"] == "newest" for p in pages)
    assert _all_pages("images", "cat", 2, order="oldest")[0] == newest[::-1]
    assert _all_pages("images", "cat -night", 2)[0] == [j for j in newest if j not in cats[0:9:3]]
    assert _all_pages("images", "cat", 2, since=day)[0] == newest[:-1]
    first = search.images("alice", "cat")["jobs"][0]
    assert marked(first["highlight"]["prompt"]) == ["cat"]
    assert search.images("alice", "dragon")["note"] is None  # few matches: ranked, nothing to say


def test_a_ranked_search_stays_ranked_across_its_pages(db: object, small_cap: None) -> None:
    made = [add_job("alice", f"owl {'owl ' * i}").id for i in range(3)]
    page = search.images("alice", "owl", limit=1)
    assert page["order"] == "relevance"
    for _ in range(4):  # now more than RANK_AT_MOST match: the next pages keep the order they began with
        add_job("alice", "owl")
    rest = _all_pages_from("owl", page["next_cursor"])
    assert rest[0]["order"] == "relevance"
    assert set(ids(page)) | {i for p in rest for i in ids(p)} >= set(made)


def _all_pages_from(text: str, cursor: str | None) -> list[dict]:
    pages = []
    while cursor is not None:
        page = search.images("alice", text, limit=1, cursor=cursor)
        pages.append(page)
        cursor = page["next_cursor"]
    return pages


def test_many_matching_conversations_come_newest_first(db: object, small_cap: None) -> None:
    day = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    made = [add_chat("alice", f"chat {i}", ("tell me about gardens", ""), ("plant roses", "garden thoughts"),
                     updated=day + dt.timedelta(hours=i)).id for i in range(6)]
    add_chat("alice", "other", ("nothing here", ""), updated=day + dt.timedelta(days=2))
    titled = add_chat("alice", "garden notes", ("hello", ""), updated=day - dt.timedelta(days=1)).id
    add_chat("bob", "bob's", ("garden garden", ""), updated=day + dt.timedelta(days=3))
    page = search.conversations("alice", "garden")
    assert page["order"] == "newest"
    assert page["note"]
    expected = [*made[::-1], titled]
    assert _all_pages("conversations", "garden", 2)[0] == expected
    assert _all_pages("conversations", "roses", 4, reasoning=False)[0] == made[::-1]
    assert _all_pages("conversations", "thoughts", 4, reasoning=False)[0] == []
    best = page["conversations"][0]
    assert best["match"]["field"] == "content"
    assert marked(best["match"]["snippet"]) == ["gardens"]


@pytest.mark.parametrize("forged", [
    {"k": 1.5, "i": 1, "o": "newest"}, {"k": "not a time", "i": 1, "o": "newest"}, {"k": "x", "i": 1, "o": "relevance"},
    {"k": "2026-01-01T00:00:00", "i": 2**70, "o": "newest"}, {"k": True, "i": 1, "o": "relevance"},
    {"k": "2026-01-01T00:00:00", "i": 1, "o": "oldest"}, {"k": [], "i": 1}])
def test_a_forged_cursor_is_refused_not_run(db: object, forged: dict) -> None:
    import base64
    import json

    add_job("alice", "cat")
    real = search.images("alice", "cat", order="relevance", limit=1, cursor=None)
    add_job("alice", "cat")
    page = search.images("alice", "cat", order="relevance", limit=1)
    payload = json.loads(base64.urlsafe_b64decode(page["next_cursor"] + "=" * (-len(page["next_cursor"]) % 4)))
    cursor = base64.urlsafe_b64encode(json.dumps({**forged, "f": payload["f"]}).encode()).decode()
    with pytest.raises(InvalidRequest) as refused:
        search.images("alice", "cat", order="relevance", limit=1, cursor=cursor)
    assert "cursor" in refused.value.errors
    assert real["jobs"]


# --- Fuzz: conversations too, on both paths (ranked, and walked newest first) ---------------------------------
def _chat_reference(query_text: str, reasoning: bool) -> set[int]:
    q = parse(query_text)
    docs = {i: (DOCS[i], DOCS[(i + 13) % len(DOCS)]) for i in range(0, len(DOCS), 2)}

    def holds(term: object, doc: str) -> bool:
        return _reference_holds(term, doc)

    def text_of(i: int) -> list[str]:
        return [docs[i][0], docs[i][1]] if reasoning else [docs[i][0]]

    return {i for i in docs
            if all(any(holds(t, d) for t in group for d in text_of(i)) for group in q.groups)
            and not any(holds(t, d) for t in q.excluded for d in text_of(i))}


def _reference_holds(term: object, doc: str) -> bool:
    words = doc.split()
    tokens = list(term.tokens)  # type: ignore[attr-defined]
    for start in range(len(words) - len(tokens) + 1):
        window = words[start:start + len(tokens)]
        if window[:-1] == tokens[:-1] and (window[-1].startswith(tokens[-1]) if term.prefix  # type: ignore
                                           else window[-1] == tokens[-1]):
            return True
    return False


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(_piece, max_size=5), reasoning=st.booleans(), cap=st.sampled_from([0, 3000]))
def test_fuzzed_conversation_queries_match_the_reference(db: object, pieces: list[str], reasoning: bool,
                                                         cap: int) -> None:
    from storage import search as storage_search

    if not Message.select().exists():
        for i in range(0, len(DOCS), 2):  # one answer per conversation: its content and its reasoning
            chat = add_chat("alice", f"t{i}", ("q", ""), (DOCS[i], DOCS[(i + 13) % len(DOCS)]))
            Conversation.update(title=str(i)).where(Conversation.id == chat.id).execute()
            add_chat("bob", "x", ("q", ""), (DOCS[i], DOCS[i]))
    text = " ".join(pieces)
    original = storage_search.RANK_AT_MOST
    storage_search.RANK_AT_MOST = cap
    try:
        found = search.conversations("alice", text, reasoning=reasoning, limit=200)
    finally:
        storage_search.RANK_AT_MOST = original
    titles = {int(c["title"]) for c in found["conversations"]}
    assert all(Conversation.get_by_id(c["conversation_id"]).user == "alice" for c in found["conversations"])
    if any(not any(w.startswith(tok) for w in VOCAB) for tok in re.findall(r"[^\W_]+", text.lower())):
        return  # stray letters: only no error is asked
    if "q" in re.findall(r"[^\W_]+", text.lower()):
        return  # the user's own turn ("q") is searched too; the reference leaves it out
    assert titles == _chat_reference(text, reasoning), (text, reasoning, cap)
