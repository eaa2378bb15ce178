"""How stored and streaming replies become Chatbot messages: thinking apart and collapsible, answer below."""

from __future__ import annotations

import time

from services.chat import ChatSnapshot
from ui.chat_tab import THOUGHT, live_to_chatbot, stored_to_chatbot


def stored(role: str, content: str, reasoning: str = "", status: str = "done", error: str | None = None,
           reasoning_s: float | None = 1.25) -> dict:
    return {"role": role, "content": content, "reasoning": reasoning, "status": status, "error": error,
            "reasoning_s": reasoning_s}


def test_a_stored_reply_shows_closed_thinking_with_its_duration_then_the_answer() -> None:
    out = stored_to_chatbot([stored("user", "hi"), stored("assistant", "hello", reasoning="they greet me")])
    assert out == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "they greet me",
         "metadata": {"title": THOUGHT, "status": "done", "duration": 1.2}},
        {"role": "assistant", "content": "hello"},
    ]


def test_stopped_and_failed_replies_say_so() -> None:
    out = stored_to_chatbot([stored("assistant", "partial", status="cancelled"),
                             stored("assistant", "", status="failed", error="no model")])
    assert [m["content"] for m in out] == ["partial", "⏹ _Stopped._", "❌ no model"]


def test_a_reply_cut_by_a_crash_shows_its_kept_text_and_why_it_ended() -> None:
    out = stored_to_chatbot([stored("assistant", "half an answer", status="failed",
                                    error="interrupted: the server stopped while this reply was written")])
    assert [m["content"] for m in out] == ["half an answer",
                                           "❌ interrupted: the server stopped while this reply was written"]


def test_while_thinking_the_bubble_is_pending_and_no_answer_shows() -> None:
    snap = ChatSnapshot(version=3, status="thinking", message="Thinking…", reasoning="hmm",
                        thinking_since=time.perf_counter() - 2)
    out = live_to_chatbot([], "q", snap)
    assert out[0] == {"role": "user", "content": "q"}
    assert out[1]["metadata"]["status"] == "pending"
    assert out[1]["content"] == "hmm"
    assert len(out) == 2


def test_once_answering_the_thinking_closes_and_the_answer_streams_below() -> None:
    snap = ChatSnapshot(version=9, status="answering", message="Answering…", reasoning="hmm", answer="Hel",
                        reasoning_s=0.5)
    out = live_to_chatbot([{"role": "user", "content": "earlier"}], "q", snap)
    assert [m["role"] for m in out] == ["user", "user", "assistant", "assistant"]
    assert out[2]["metadata"] == {"title": THOUGHT, "status": "done", "duration": 0.5}
    assert out[3] == {"role": "assistant", "content": "Hel"}


def test_loading_shows_the_model_status_in_the_pending_bubble() -> None:
    snap = ChatSnapshot(version=1, status="loading", message="⏳ loading the model")
    out = live_to_chatbot([], "q", snap)
    assert out[1]["content"] == "⏳ loading the model"
    assert out[1]["metadata"]["status"] == "pending"


def test_the_thinking_label_is_in_the_past_once_the_reply_ended() -> None:
    from ui.chat_tab import THINKING, thinking_message

    assert thinking_message("hmm", pending=True, duration=0.1)["metadata"]["title"] == THINKING == "Thinking"
    assert thinking_message("hmm", pending=False, duration=0.1)["metadata"] == {
        "title": "Thought", "status": "done", "duration": 0.1}


def test_an_empty_conversation_list_says_so() -> None:
    from types import SimpleNamespace

    from ui.chat_tab import NO_CONVERSATIONS, conversation_choices

    pages: list[list[dict[str, object]]] = [[], [{"title": "Sky", "conversation_id": 4}]]
    chat = SimpleNamespace(list_conversations=lambda scope, limit: {"conversations": pages.pop(0)})
    accounts = SimpleNamespace(viewer=lambda user: SimpleNamespace(scope=user))
    listing = conversation_choices(SimpleNamespace(chat=chat, accounts=accounts))
    empty = listing(None)
    assert (empty.choices, empty.info) == ([], NO_CONVERSATIONS)
    one = listing(None)
    assert (one.choices, one.info) == ([("Sky", 4)], "")
