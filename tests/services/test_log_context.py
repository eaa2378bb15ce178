"""Structured logs: with ATELIER_LOG_FORMAT=json each record is one JSON object carrying the request id, user and
job id of the work it is about, in the job's own thread too."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from api.log_format import JsonFormatter, configure_logging
from services import log_context
from services.jobs import JobHandle


def line(record: logging.LogRecord) -> dict[str, object]:
    text = JsonFormatter().format(record)
    assert "\n" not in text  # one object per line, whatever the message holds
    return json.loads(text)


def record(message: str, *args: object, exc_info: object = None, **extra: object) -> logging.LogRecord:
    entry = logging.getLogger("atelier.test").makeRecord("atelier.test", logging.WARNING, __file__, 1, message, args,
                                                         exc_info, extra=extra)
    return entry


def test_a_json_line_carries_the_context_and_the_extras() -> None:
    with log_context.bound(request_id="req-42", user="alice", job_id=7):
        fields = line(record("job %s of %s\nfinished", 7, "alice", path=Path("/x"), count=3,
                             color_message="\x1b[36mjob\x1b[0m"))
    assert {k: fields[k] for k in ("level", "logger", "message", "request_id", "user", "job_id", "count", "path")} == {
        "level": "WARNING", "logger": "atelier.test", "message": "job 7 of alice\nfinished", "request_id": "req-42",
        "user": "alice", "job_id": 7, "count": 3, "path": "/x"}
    assert str(fields["time"]).endswith("+00:00")
    assert "color_message" not in fields  # uvicorn's copy of the message with terminal colours
    outside = line(record("no request"))
    assert (outside["request_id"], outside["user"], outside["job_id"]) == (None, None, None)


def test_a_traceback_stays_inside_the_line() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import sys

        fields = line(record("failed", exc_info=sys.exc_info()))
    assert "RuntimeError: boom" in str(fields["exception"])


def test_a_jobs_thread_logs_with_the_request_that_started_it() -> None:
    seen: list[dict[str, object]] = []
    handle: JobHandle = JobHandle(type("S", (), {"version": 0, "status": "waiting"})())
    with log_context.bound(request_id="req-9", user="bob"):
        handle.start(lambda: seen.append(log_context.current()), name="test-job")
    handle.thread.join(10)
    assert (seen[0]["request_id"], seen[0]["user"]) == ("req-9", "bob")
    assert log_context.current()["request_id"] == ""  # restored after the block


def test_configure_logging_writes_json_or_text(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    try:
        configure_logging("json")
        with log_context.bound(request_id="r1"):
            logging.getLogger("atelier-test-json").info("started")  # a logger no earlier test configured
        configure_logging("text")
        logging.getLogger("atelier-test-text").info("plain")
        with pytest.raises(ValueError, match="text or json"):
            configure_logging("xml")
    finally:
        root.handlers[:], root.level = saved  # pytest's own capture handlers back
    # Other threads of the session (earlier tests' servers) may log meanwhile: only these two lines are ours.
    lines = stream.getvalue().splitlines()
    first = next(line for line in lines if '"started"' in line)
    assert json.loads(first)["request_id"] == "r1"
    assert any(line.endswith("INFO atelier-test-text: plain") for line in lines)
