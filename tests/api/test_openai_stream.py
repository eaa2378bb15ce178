"""OpenAI's stream of chunks, from a reply's snapshots: reasoning apart, the answer held back while its tail could
still become a stop sequence, the finish reason and usage last, then [DONE]."""

from __future__ import annotations

import asyncio
import json
import threading
import time

from api.dialects.openai_chat import Reply, holdback
from services.chat import ChatHandle


def test_holdback_keeps_what_could_start_a_stop_sequence() -> None:
    assert holdback("abc E", ("END",)) == 1
    assert holdback("abc EN", ("END", "NEVER")) == 2
    assert holdback("abc EN", ("X",)) == 0
    assert holdback("abc END", ("END",)) == 0  # a whole stop is the service's to cut, not a prefix


def events_of(updates: list[dict[str, object]], stops: tuple[str, ...]) -> list[dict[str, object]]:
    """The parsed events a Reply streams while `updates` are applied to its handle, one by one."""
    handle = ChatHandle(1)

    def feed() -> None:
        for update in updates:
            time.sleep(0.01)
            handle.update(**update)

    async def collect() -> list[str]:
        threading.Thread(target=feed, daemon=True).start()
        return [event async for event in Reply("tiny", handle).events(stops, include_usage=True)]

    raw = asyncio.run(collect())
    assert raw[-1] == "data: [DONE]\n\n"
    return [json.loads(event.removeprefix("data: ")) for event in raw[:-1]]


def test_a_stop_split_across_tokens_is_never_sent() -> None:
    events = events_of([
        {"status": "thinking", "reasoning": "hm"}, {"status": "answering", "answer": "ab"},
        {"answer": "abE"}, {"answer": "abEN"},  # "EN" may be the start of "END": held back
        {"status": "done", "answer": "ab", "usage": {"finish_reason": "stop", "prompt_tokens": 3,
                                                      "completion_tokens": 6, "reasoning_tokens": 2}},
    ], ("END",))
    deltas = [e["choices"][0]["delta"] for e in events if e["choices"]]
    content = "".join(d.get("content") or "" for d in deltas)
    assert content == "ab"
    assert "".join(d.get("reasoning_content") or "" for d in deltas) == "hm"
    assert all("E" not in (d.get("content") or "") for d in deltas)
    assert events[-2]["choices"][0]["finish_reason"] == "stop"
    assert events[-1]["choices"] == []
    assert events[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 6, "total_tokens": 9,
                                   "completion_tokens_details": {"reasoning_tokens": 2}}


def test_a_held_tail_that_is_no_stop_is_sent_once_settled() -> None:
    events = events_of([{"status": "answering", "answer": "xE"}, {"answer": "xEX"},
                        {"status": "done", "answer": "xEX", "usage": {"finish_reason": "length"}}], ("END",))
    content = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
    assert content == "xEX"
    assert events[-2]["choices"][0]["finish_reason"] == "length"


def test_a_failed_reply_ends_the_stream_with_an_error_event() -> None:
    events = events_of([{"status": "failed", "error": "out of memory"}], ())
    assert events[-1]["error"]["message"] == "The reply failed: out of memory"
