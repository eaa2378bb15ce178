"""A real server process killed with SIGKILL in the middle of an image job and a chat reply, then started again
on the same data dir: finished work is intact, interrupted work is recorded as such, nothing half-written stays."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gradio_client import Client

from tests.services.conftest import tiny_settings

ROOT = Path(__file__).resolve().parents[1]
IMAGE: dict[str, Any] = {"prompt": "finished before the crash", "negative_prompt": "", "width": 64, "height": 64,
                         "steps": 2, "cfg_scale": 7.0, "seed": 42, "sampler": "Euler a", "batch_count": 1}
CHAT: dict[str, Any] = {"temperature": 0.6, "top_p": 0.95, "max_new_tokens": 16}


@contextmanager
def app_process(data_dir: Path, log: Path) -> Iterator[tuple[subprocess.Popen[bytes], Client]]:
    """`python app.py --profile tiny` on a free port, as its own process; yield it and a client for it."""
    with log.open("wb") as out:
        # cwd is the data dir's parent, so no developer's .env is read.
        proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--profile", "tiny", "--data-dir",
                                 str(data_dir), "--port", "0", "--no-warmup"],
                                cwd=data_dir.parent, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not (found := re.search(r"Uvicorn running on (http://[\d.]+:\d+)", log.read_text())):
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        yield proc, Client(found[1] + "/", verbose=False, download_files=False)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    """Read the database the way an outsider would, without going through the app."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        return conn.execute(sql).fetchall()


def wait_until(predicate: Any, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_killed_server_restarts_with_finished_work_intact_and_interrupted_work_marked(
        tmp_path: Path, tiny_sd_dir: Path, tiny_r1_gptq_dir: Path) -> None:
    data_dir = tmp_path / "data"
    settings = tiny_settings(data_dir, tiny_sd_dir, tiny_r1_gptq_dir)  # links the session's tiny models in
    db, images = settings.db_path, settings.images_dir
    with app_process(data_dir, tmp_path / "server.log") as (proc, client):
        *_, finished = client.predict(**IMAGE, api_name="/generate_image")
        assert finished["status"] == "done"
        png = images / finished["files"][0]
        png_digest = hashlib.sha256(png.read_bytes()).hexdigest()
        answered = client.predict(message="answered before the crash", conversation_id=None, **CHAT,
                                  api_name="/chat")
        assert answered["status"] == "done"

        # A long image job (4 x 500 steps) running...
        long_job = client.submit(**{**IMAGE, "prompt": "killed mid-job", "width": 128, "height": 128,
                                    "steps": 500, "batch_count": 4, "seed": 7}, api_name="/generate_image")
        wait_until(lambda: len(long_job.outputs()) >= 2, "the long image job never started")
        # ...and a reply streaming, its text so far saved. The tiny model's random weights may end a reply by
        # themselves early, so this asks again, a few times at most.
        for attempt in range(5):
            reply = client.submit(message=f"killed mid-reply, take {attempt + 1}", conversation_id=None,
                                  **{**CHAT, "max_new_tokens": 4000}, api_name="/chat")
            wait_until(lambda r=reply: r.done() or query(db, "SELECT 1 FROM replydraft WHERE reasoning != ''"),
                       "the reply never started")
            if not reply.done():
                break
        # A temporary file, as a kill in the middle of writing a PNG would leave one.
        (images / "2000-01-01").mkdir(parents=True, exist_ok=True)
        (images / "2000-01-01" / ".000999-0-1-x1y2z3.tmp").write_bytes(b"\x89PNG half")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)

    # Killed for real: no shutdown code ran, the job row and the reply's draft are as the crash left them.
    assert query(db, "SELECT status FROM imagejob WHERE prompt = 'killed mid-job'") == [("running",)]
    (cut_title, draft_text), = query(db, "SELECT c.title, d.reasoning FROM replydraft d "
                                         "JOIN conversation c ON c.id = d.conversation_id")
    assert draft_text

    with app_process(data_dir, tmp_path / "restarted.log") as (_, client):
        jobs = {j["prompt"]: j for j in client.predict(limit=10, api_name="/history")["jobs"]}
        assert jobs["finished before the crash"]["status"] == "done"
        assert jobs["killed mid-job"]["status"] == "failed"
        assert jobs["killed mid-job"]["error"].startswith("interrupted")
        assert jobs["killed mid-job"]["files"] == []
        assert hashlib.sha256(png.read_bytes()).hexdigest() == png_digest
        assert list(images.rglob("*.tmp")) == []

        conversations = {c["title"]: c for c in client.predict(limit=10, api_name="/conversations")["conversations"]}
        kept = client.predict(conversation_id=conversations["answered before the crash"]["conversation_id"],
                              api_name="/conversation")["messages"]
        assert [(m["role"], m["status"]) for m in kept] == [("user", "done"), ("assistant", "done")]
        assert kept[1]["content"] == answered["answer"]
        cut = client.predict(conversation_id=conversations[cut_title]["conversation_id"],
                             api_name="/conversation")["messages"]
        assert [(m["role"], m["status"]) for m in cut] == [("user", "done"), ("assistant", "failed")]
        assert cut[1]["error"].startswith("interrupted: the server stopped")
        assert cut[1]["reasoning"] == draft_text  # the partial reply is kept
        assert query(db, "SELECT count(*) FROM replydraft") == [(0,)]
        # And the server works as before.
        assert client.predict(message="after the restart", conversation_id=conversations[cut_title][
            "conversation_id"], **CHAT, api_name="/chat")["status"] == "done"
