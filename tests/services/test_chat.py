"""Chat below the UI: conversations persist, reasoning stays apart and is never sent back, Stop keeps the
partial reply, regenerate and edit replace a reply only once the new one exists."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from peewee import OperationalError

from contracts import InvalidRequest, TextLimits, TextOptions
from services.chat import ChatHandle, ChatService, ChatSnapshot, cut_at_stop, split_prompt_answer
from services.model_slots import ModelSlot
from storage.db import open_database
from storage.models import Conversation, Message, ReplyDraft
from tests.services.fakes import FakeTextBackend


@pytest.fixture
def backend() -> FakeTextBackend:
    return FakeTextBackend()


@pytest.fixture
def chat(db_location: Path | str, backend: FakeTextBackend) -> ChatService:
    open_database(db_location)
    slot = ModelSlot("text", backend, lambda b, report: b.load(report), model="fake-r1", backend_name="fake")
    return ChatService(slot, TextLimits(max_new_tokens=512, max_message_chars=100), TextOptions(max_new_tokens=256))


def reply(chat: ChatService, message: str | None, cid: int | None = None, user: str = "", **kw: Any):
    return chat.start(chat.validate(message, cid, **kw), user=user).wait_finished(30)


def start_long(chat: ChatService, backend: FakeTextBackend, message: str, chunks_seen: int = 1,
               delay: float = 0.05) -> tuple[ChatHandle, ChatSnapshot]:
    """Start a 100-chunk reply and wait until `chunks_seen` chunks of its reasoning streamed."""
    backend.delay = delay
    backend.chunks_per_part = 50
    handle = chat.start(chat.validate(message))
    snap = handle.wait(-1, 30)
    while snap.reasoning.count("thinking") < chunks_seen:
        snap = handle.wait(snap.version, 30)
    return handle, snap


def test_a_reply_is_stored_with_its_reasoning_apart(chat: ChatService) -> None:
    snap = reply(chat, "What is 2+2?")
    assert snap.status == "done"
    assert snap.reasoning == "thinking 1. thinking 1. "
    assert snap.answer == "answer 1. answer 1. "
    assert snap.reasoning_s is not None
    conv = chat.get_conversation(snap.conversation_id)
    assert conv["title"] == "What is 2+2?"
    user, assistant = conv["messages"]
    assert (user["role"], user["content"]) == ("user", "What is 2+2?")
    assert assistant["content"] == "answer 1. answer 1. "
    assert assistant["reasoning"] == "thinking 1. thinking 1. "
    assert assistant["status"] == "done"
    assert assistant["model"] == "fake-r1"
    assert assistant["params"]["temperature"] == 0.6
    assert (assistant["completion_tokens"], assistant["reasoning_tokens"], assistant["prompt_tokens"]) == (4, 2, 3)
    assert snap.message_id == assistant["id"]


def test_reasoning_is_never_sent_back(chat: ChatService, backend: FakeTextBackend) -> None:
    first = reply(chat, "one")
    reply(chat, "two", first.conversation_id)
    assert backend.calls[1] == [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "answer 1. answer 1. "},
        {"role": "user", "content": "two"},
    ]


def test_stop_ends_the_reply_and_keeps_the_partial_text(chat: ChatService, backend: FakeTextBackend) -> None:
    handle, _ = start_long(chat, backend, "long one")
    handle.stop()
    final = handle.wait_finished(30)
    assert final.status == "cancelled"
    assert final.usage["finish_reason"] == "cancelled"
    assert final.usage["completion_tokens"] < 10  # of 100
    stored = chat.get_conversation(final.conversation_id)["messages"][-1]
    assert stored["status"] == "cancelled"
    assert stored["reasoning"] == final.reasoning
    assert stored["reasoning"].startswith("thinking 1.")


def test_regenerate_replaces_the_last_reply(chat: ChatService, backend: FakeTextBackend) -> None:
    first = reply(chat, "q")
    again = reply(chat, None, first.conversation_id, mode="regenerate")
    assert again.answer == "answer 2. answer 2. "
    messages = chat.get_conversation(first.conversation_id)["messages"]
    assert [(m["role"], m["content"]) for m in messages] == [("user", "q"), ("assistant", "answer 2. answer 2. ")]
    assert backend.calls[1] == [{"role": "user", "content": "q"}]


def test_edit_rewrites_the_last_message_and_its_reply(chat: ChatService, backend: FakeTextBackend) -> None:
    first = reply(chat, "first question")
    second = reply(chat, "typo'd question", first.conversation_id)
    reply(chat, "fixed question", second.conversation_id, mode="edit")
    messages = chat.get_conversation(first.conversation_id)["messages"]
    assert [m["content"] for m in messages] == ["first question", "answer 1. answer 1. ", "fixed question",
                                                "answer 3. answer 3. "]
    assert backend.calls[2][-1] == {"role": "user", "content": "fixed question"}


def test_a_failed_regenerate_keeps_the_earlier_reply(chat: ChatService, backend: FakeTextBackend) -> None:
    first = reply(chat, "q")
    backend.fail_with = RuntimeError("GPU on fire")
    failed = reply(chat, None, first.conversation_id, mode="regenerate")
    assert failed.status == "failed"
    assert "GPU on fire" in failed.error
    messages = chat.get_conversation(first.conversation_id)["messages"]
    assert [m["content"] for m in messages] == ["q", "answer 1. answer 1. "]


def test_a_failed_send_is_recorded_and_not_sent_back_later(chat: ChatService, backend: FakeTextBackend) -> None:
    backend.fail_with = RuntimeError("boom")
    failed = reply(chat, "q1")
    assert failed.status == "failed"
    assert chat.get_conversation(failed.conversation_id)["messages"][-1]["status"] == "failed"
    backend.fail_with = None
    reply(chat, "q2", failed.conversation_id)
    assert backend.calls[-1] == [{"role": "user", "content": "q1"}, {"role": "user", "content": "q2"}]


def test_bad_requests_are_refused_and_change_nothing(chat: ChatService) -> None:
    with pytest.raises(InvalidRequest, match="must not be empty"):
        chat.start(chat.validate("   "))
    with pytest.raises(InvalidRequest, match="at most 100"):
        chat.start(chat.validate("x" * 101))
    with pytest.raises(InvalidRequest, match="conversation 999 does not exist"):
        chat.start(chat.validate("hi", 999))
    with pytest.raises(InvalidRequest, match="temperature must be between 0"):
        chat.options(temperature=3)
    with pytest.raises(InvalidRequest, match="max_new_tokens must be between 1 and 512"):
        chat.options(max_new_tokens=1000)
    with pytest.raises(InvalidRequest, match="regenerate needs a conversation_id"):
        chat.start(chat.validate(None, None, mode="regenerate"))
    assert Conversation.select().count() == 0
    assert Message.select().count() == 0


def test_a_thinking_budget_of_zero_lifts_a_default_budget(tmp_path: Path, backend: FakeTextBackend) -> None:
    open_database(tmp_path / "chat.db")
    slot = ModelSlot("text", backend, lambda b, report: b.load(report), model="fake-r1", backend_name="fake")
    chat = ChatService(slot, TextLimits(max_new_tokens=512), TextOptions(max_new_tokens=256, thinking_budget=32))
    assert chat.options().thinking_budget == 32  # nothing given keeps the default
    assert chat.options(thinking_budget=None).thinking_budget == 32
    assert chat.options(thinking_budget=8).thinking_budget == 8
    assert chat.options(thinking_budget=0).thinking_budget is None  # the UI's and the API's "no limit"
    assert chat.field_errors("hi", thinking_budget=0) == {}
    with pytest.raises(InvalidRequest, match="thinking_budget must be empty"):
        chat.options(thinking_budget=-1)


def test_conversations_are_per_user_paged_and_deletable(chat: ChatService) -> None:
    ids = [reply(chat, f"c{i}").conversation_id for i in range(3)]
    reply(chat, "later", ids[0])  # the first conversation becomes the most recent
    page = chat.list_conversations(limit=2)
    assert [c["conversation_id"] for c in page["conversations"]] == [ids[0], ids[2]]
    rest = chat.list_conversations(limit=2, before=page["next_before"])
    assert [c["conversation_id"] for c in rest["conversations"]] == [ids[1]]
    assert rest["next_before"] is None
    assert chat.list_conversations(user="other")["conversations"] == []
    assert chat.get_conversation(ids[0], user="other") is None
    with pytest.raises(InvalidRequest):
        chat.start(chat.validate("sneaky", ids[0]), user="other")
    assert chat.delete_conversation(ids[1]) is True
    assert chat.get_conversation(ids[1]) is None
    assert chat.delete_conversation(ids[1]) is False


def test_conversations_survive_a_restart(db_location: Path | str, backend: FakeTextBackend) -> None:
    db = open_database(db_location)
    slot = ModelSlot("text", backend, lambda b, report: None, model="fake-r1", backend_name="fake")
    first = ChatService(slot, TextLimits(), TextOptions())
    snap = reply(first, "remember me")
    db.close()
    open_database(db_location)
    second = ChatService(slot, TextLimits(), TextOptions())
    messages = second.get_conversation(snap.conversation_id)["messages"]
    assert [m["content"] for m in messages] == ["remember me", "answer 1. answer 1. "]


def test_a_failed_reply_names_no_absolute_path_of_the_server(chat: ChatService, backend: FakeTextBackend,
                                                            tmp_path: Path) -> None:
    missing = tmp_path / "hf-cache" / "models--x" / "model.safetensors"
    missing.parent.mkdir(parents=True)
    backend.fail_with = FileNotFoundError(2, "No such file or directory", str(missing))
    snap = reply(chat, "hello")
    assert snap.status == "failed"
    assert "No such file or directory: '…/model.safetensors'" in snap.error
    stored = chat.get_conversation(snap.conversation_id)["messages"][-1]
    assert str(tmp_path) not in snap.error + snap.message + stored["error"]


def test_prompt_assist_stores_nothing(chat: ChatService, backend: FakeTextBackend) -> None:
    snap = chat.start_prompt_assist(chat.validate_idea("a fox in the snow")).wait_finished(30)
    assert snap.status == "done"
    assert snap.answer == "answer 1. answer 1. "
    assert "a fox in the snow" in backend.calls[0][0]["content"]
    assert Conversation.select().count() == 0
    with pytest.raises(InvalidRequest, match="idea must not be empty"):
        chat.start_prompt_assist(chat.validate_idea(" "))


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Prompt: a fox, watercolor\nNegative prompt: blurry", ("a fox, watercolor", "blurry")),
        ("**Prompt:** a fox\n**Negative prompt:** ugly, \"bad\"", ("a fox", 'ugly, "bad"')),
        ('**Prompt**: "a fox"\n\n**Negative Prompt**: x', ("a fox", "x")),
        ("just some words", ("just some words", "")),
        ("", ("", "")),
    ],
)
def test_prompt_answer_is_split_into_prompt_and_negative(answer: str, expected: tuple[str, str]) -> None:
    assert split_prompt_answer(answer) == expected


def test_a_remote_backend_may_run_several_replies_at_once(db_location: Path | str) -> None:
    open_database(db_location)
    backend = FakeTextBackend(delay=0.05, chunks_per_part=4)
    in_flight, peak = 0, 0
    real_stream = backend.stream

    def counting_stream(*args: object, **kwargs: object):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        stream = real_stream(*args, **kwargs)
        real_close = stream.close

        def close() -> None:
            nonlocal in_flight
            in_flight -= 1
            real_close()

        stream.close = close
        return stream

    backend.stream = counting_stream
    slot = ModelSlot("text", backend, lambda b, report: None, model="fake", backend_name="fake")
    serial = ChatService(slot, TextLimits(), TextOptions(max_new_tokens=64))
    handles = [serial.start(serial.validate(f"q{i}")) for i in range(3)]
    assert all(h.wait_finished(30).status == "done" for h in handles)
    assert peak == 1
    peak = 0
    parallel = ChatService(slot, TextLimits(), TextOptions(max_new_tokens=64), concurrency=3)
    handles = [parallel.start(parallel.validate(f"q{i}")) for i in range(3)]
    assert all(h.wait_finished(30).status == "done" for h in handles)
    assert peak == 3


def test_a_reply_is_saved_as_it_streams_so_a_crash_keeps_it_as_failed(chat: ChatService,
                                                                        backend: FakeTextBackend) -> None:
    handle, _ = start_long(chat, backend, "long one", chunks_seen=2, delay=0.01)  # the 1st was saved before the 2nd
    # Mid-stream, the text so far is in the database, not only in this process's memory.
    draft = ReplyDraft.get()
    assert draft.reasoning.startswith("thinking 1.")
    assert draft.model == "fake-r1"
    assert handle.wait_finished(30).status == "done"
    assert ReplyDraft.select().count() == 0  # the finished reply replaced its draft, in one transaction


def test_a_failed_database_write_fails_the_reply_clearly_and_the_next_start_keeps_its_text(
        chat: ChatService, monkeypatch: pytest.MonkeyPatch) -> None:
    kept = reply(chat, "earlier")
    real_create = Message.create

    def disk_full_for_replies(**fields: object) -> Message:
        if fields["role"] == "assistant":
            raise OperationalError("database or disk is full")
        return real_create(**fields)

    with monkeypatch.context() as patched:
        patched.setattr(Message, "create", disk_full_for_replies)
        broken = reply(chat, "then the disk filled up", kept.conversation_id)
        regenerated = reply(chat, None, kept.conversation_id, mode="regenerate")
    # The watcher is told, instead of waiting forever.
    assert broken.status == "failed"
    assert broken.error.endswith("(and the reply could not be saved: OperationalError: database or disk is full)")
    # A failed regenerate changes nothing, so there was nothing more to save.
    assert (regenerated.status, regenerated.error) == ("failed", "OperationalError: database or disk is full")
    messages = chat.get_conversation(kept.conversation_id)["messages"]
    assert [m["content"] for m in messages] == ["earlier", "answer 1. answer 1. ", "then the disk filled up"]
    # What a restart does: the unsaved reply becomes a failed reply with its text so far.
    assert chat.recover() == 1
    assert ReplyDraft.select().count() == 0
    *_, recovered = chat.get_conversation(kept.conversation_id)["messages"]
    assert (recovered["role"], recovered["status"]) == ("assistant", "failed")
    assert recovered["error"].startswith("interrupted: the server stopped")
    assert recovered["reasoning"].startswith("thinking 2.")
    assert broken.reasoning.startswith(recovered["reasoning"])
    assert recovered["model"] == "fake-r1"
    assert chat.recover() == 0


def test_deleting_a_conversation_while_its_reply_streams_ends_the_reply_clearly(
        chat: ChatService, backend: FakeTextBackend) -> None:
    handle, snap = start_long(chat, backend, "soon gone", delay=0.01)
    assert chat.delete_conversation(snap.conversation_id)
    final = handle.wait_finished(30)
    assert final.status == "failed"
    assert "was deleted while this reply was written" in final.error
    assert (Conversation.select().count(), Message.select().count(), ReplyDraft.select().count()) == (0, 0, 0)


def test_recovery_after_a_crash_before_the_model_ran(chat: ChatService) -> None:
    first = reply(chat, "q")
    # Turns planned (the user's words stored) whose replies never ran: the server died right after.
    chat._plan(chat.validate("and then?", first.conversation_id), "")
    other = reply(chat, "another")
    chat._plan(chat.validate(None, other.conversation_id, mode="regenerate"), "")
    assert ReplyDraft.select().count() == 2
    assert chat.recover() == 1
    *_, cut = chat.get_conversation(first.conversation_id)["messages"]
    assert (cut["role"], cut["status"], cut["content"], cut["position"]) == ("assistant", "failed", "", 3)
    assert cut["error"].startswith("interrupted")
    # The regenerate that never ran changed nothing: the earlier reply stays.
    assert [m["content"] for m in chat.get_conversation(other.conversation_id)["messages"]] == [
        "another", "answer 2. answer 2. "]
    assert ReplyDraft.select().count() == 0


def test_start_returns_what_the_conversation_shows_before_the_reply(chat: ChatService) -> None:
    fresh = chat.start(chat.validate("q1"))
    assert (fresh.turn.earlier, fresh.turn.user_text) == ([], "q1")
    cid = fresh.wait_finished(30).conversation_id
    reply(chat, "q2", cid)
    stored = chat.get_conversation(cid)["messages"]
    # What the tab showed by reading the conversation again after start(): every message before the last question.
    regenerate = chat.start(chat.validate(None, cid, mode="regenerate"))
    assert regenerate.turn.earlier == stored[:2]
    assert regenerate.turn.user_text == "q2"
    regenerate.wait_finished(30)
    edit = chat.start(chat.validate("q2, better", cid, mode="edit"))
    assert (edit.turn.earlier, edit.turn.user_text) == (stored[:2], "q2, better")
    edit.wait_finished(30)
    before_send = chat.get_conversation(cid)["messages"]
    send = chat.start(chat.validate("q3", cid))
    assert (send.turn.earlier, send.turn.user_text) == (before_send, "q3")
    assert [m["content"] for m in before_send][2] == "q2, better"
    send.wait_finished(30)


def test_a_turn_is_checked_once_and_starts_as_checked(chat: ChatService) -> None:
    request, errors = chat.check("hi", None, temperature=0.0, thinking_budget=0)
    assert errors == {}
    assert request is not None
    assert (request.message, request.mode, request.options.temperature, request.options.thinking_budget) == (
        "hi", "send", 0.0, None)
    assert chat.check("", None, "edit", temperature=3)[1].keys() == {"message", "temperature", "conversation_id"}
    assert chat.check("ignored", 5, "regenerate")[0].message is None  # a regenerate carries no message
    assert chat.check_idea("  a fox  ")[0].idea == "a fox"
    assert chat.check_idea("x" * 1001)[1] == {"idea": "idea is 1001 characters; at most 1000 are allowed."}


def test_a_whole_exchange_becomes_a_conversation_without_its_earlier_reasoning(chat: ChatService,
                                                                               backend: FakeTextBackend) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nhello"},
                {"role": "user", "content": "and now?"}]
    snap = chat.start_messages(messages, user="alice", source="openai").wait_finished(30)
    assert snap.status == "done"
    # The model sees the exchange as R1 must: the earlier answer without its reasoning.
    assert backend.calls[-1] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
                                 {"role": "assistant", "content": "hello"}, {"role": "user", "content": "and now?"}]
    conv = chat.get_conversation(snap.conversation_id, "alice")
    assert conv["title"] == "hi"
    assert [(m["role"], m["content"]) for m in conv["messages"]] == [
        ("system", "Be brief."), ("user", "hi"), ("assistant", "hello"), ("user", "and now?"),
        ("assistant", snap.answer)]
    assert chat.get_conversation(snap.conversation_id, "bob") is None
    with pytest.raises(InvalidRequest, match="last message must be from the user"):
        chat.start_messages(messages[:3], user="alice")


@pytest.mark.parametrize(("stop", "answer"), [
    ((" answer",), "answer 1."),  # spans two chunks ("answer 1. " and "answer 1. "): found once the second arrives
    (("nothing like it", "1. answer"), "answer "),  # the first of several to appear
    (("answer",), ""),  # at the very start
])
def test_a_stop_sequence_ends_the_answer_before_it_and_the_reply_is_done(chat: ChatService, stop: tuple[str, ...],
                                                                         answer: str) -> None:
    snap = chat.start_messages([{"role": "user", "content": "go"}], stop=stop).wait_finished(30)
    assert (snap.status, snap.answer, snap.usage["finish_reason"]) == ("done", answer, "stop")
    stored = chat.get_conversation(snap.conversation_id)["messages"][-1]
    assert (stored["content"], stored["status"], stored["finish_reason"]) == (answer, "done", "stop")
    assert snap.reasoning == "thinking 1. thinking 1. "  # the reasoning is never cut


def test_cut_at_stop_finds_a_stop_across_the_old_and_the_new_text() -> None:
    assert cut_at_stop("abc E", "ND more", ("END",)) == ("abc ", True)
    assert cut_at_stop("abc", " more", ("END",)) == ("abc more", False)
    assert cut_at_stop("", "xEND", ("END", "x")) == ("", True)
