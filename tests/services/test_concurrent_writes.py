"""Replies, image jobs, deletes and new accounts at the same time: each waits its turn for the database's write
lock (SQLite) or its rows' locks (PostgreSQL), and none fails with "database is locked" or a duplicate key."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from contracts import ImageLimits, TextLimits, TextOptions
from services.accounts import AccountService
from services.chat import ChatService
from services.history import HistoryService
from services.images import ImageService
from services.model_slots import ModelSlot
from storage.db import open_database
from storage.models import Conversation, ImageJob, Message, ReplyDraft
from tests.services.fakes import FakeImageBackend, FakeTextBackend

THREADS = 8


def run_threads(worker: Callable[[int], None], timeout_s: float) -> list[threading.Thread]:
    """Run worker(0) … worker(THREADS - 1) in threads at once and join them; the ones still alive after."""
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout_s)
    return [thread for thread in threads if thread.is_alive()]
ROUNDS = 4


def test_concurrent_replies_jobs_and_deletes_never_meet_a_locked_database(tmp_path: Path,
                                                                          db_location: Path | str) -> None:
    db = open_database(db_location)
    text = ModelSlot("text", FakeTextBackend(chunks_per_part=3), lambda b, report: None, model="fake-r1",
                     backend_name="fake")
    # A remote text backend runs replies side by side; every reply reads, then writes, its conversation.
    chat = ChatService(text, TextLimits(), TextOptions(max_new_tokens=64), concurrency=THREADS)
    image_slot = ModelSlot("image", FakeImageBackend(), lambda b, report: None, model="fake-sd", backend_name="fake")
    images = ImageService(image_slot, tmp_path / "images", ImageLimits())
    history = HistoryService(tmp_path / "images")
    accounts = AccountService()
    start = threading.Barrier(THREADS)
    failures: list[str] = []

    def worker(n: int) -> None:
        try:
            start.wait()
            for r in range(ROUNDS):
                first = chat.start(chat.validate(f"question {n}.{r}"), user=f"u{n}").wait_finished(60)
                again = chat.start(chat.validate("and then?", first.conversation_id), user=f"u{n}").wait_finished(60)
                regenerated = chat.start(chat.validate(None, first.conversation_id, mode="regenerate"),
                                         user=f"u{n}").wait_finished(60)
                job = images.run(images.validate(prompt=f"p{n}.{r}", width=64, height=64, steps=1), user=f"u{n}")
                failures.extend(f"{s.status}: {s.error}" for s in (first, again, regenerated, job)
                                if s.status != "done")
                assert history.delete_job(job.job_id, f"u{n}")
                assert chat.delete_conversation(first.conversation_id, f"u{n}")
            accounts.add(f"user{n}", "a long enough password")
        except Exception as err:  # collected: an exception in a thread would not fail the test by itself
            failures.append(f"{type(err).__name__}: {err}")

    assert run_threads(worker, 300) == []  # none still running
    assert failures == []
    # Everything was deleted again, and nothing was left half-done.
    assert (Conversation.select().count(), Message.select().count(), ReplyDraft.select().count()) == (0, 0, 0)
    assert ImageJob.select().count() == 0
    assert len(accounts.list()) == THREADS
    assert list((tmp_path / "images").rglob("*.png")) == []
    db.close()


def test_sends_and_regenerates_of_one_conversation_at_once_each_take_their_own_place(db_location: Path | str) -> None:
    """Every turn reads the conversation, then writes the next position: on PostgreSQL the conversation's row lock
    keeps two of them from taking the same one (a duplicate key otherwise)."""
    open_database(db_location)
    text = ModelSlot("text", FakeTextBackend(chunks_per_part=2), lambda b, report: None, model="fake-r1",
                     backend_name="fake")
    chat = ChatService(text, TextLimits(), TextOptions(max_new_tokens=64), concurrency=THREADS)
    cid = chat.start(chat.validate("first")).wait_finished(60).conversation_id
    start = threading.Barrier(THREADS)
    outcomes: list[str] = []

    def worker(n: int) -> None:
        try:
            start.wait()
            mode = "send" if n % 2 else "regenerate"
            snap = chat.start(chat.validate(f"more {n}" if mode == "send" else None, cid, mode=mode)).wait_finished(60)
            outcomes.append(snap.status if snap.status == "done" else f"{snap.status}: {snap.error}")
        except Exception as err:  # collected: an exception in a thread would not fail the test by itself
            outcomes.append(f"{type(err).__name__}: {err}")

    assert run_threads(worker, 120) == []  # none still running
    assert outcomes == ["done"] * THREADS
    # Which turns survive depends on the order the replies end in (each replaces what follows its own turn);
    # the last one written ends the conversation.
    assert chat.get_conversation(cid)["messages"][-1]["role"] == "assistant"
    assert ReplyDraft.select().count() == 0
