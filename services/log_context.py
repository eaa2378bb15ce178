"""Who a log line is about: the request id, user and job id of the work under way, carried in context variables,
and the JSON formatter that writes them (ATELIER_LOG_FORMAT=json: one object per line).

The request-id middleware (api/request_id.py) sets the request id; the services bind the user and job id as
they learn them. A job's worker thread starts in a copy of its caller's context (services/jobs.py), so the lines
it logs carry the request that started it. A log line, a request log row (services/request_log.py) and the
`X-Request-ID` a user quotes in a report then share one id.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

REQUEST_ID: ContextVar[str] = ContextVar("atelier_request_id", default="")
USER: ContextVar[str | None] = ContextVar("atelier_user", default=None)
JOB_ID: ContextVar[int | None] = ContextVar("atelier_job_id", default=None)
CLIENT: ContextVar[str] = ContextVar("atelier_client", default="")
ROUTE: ContextVar[str] = ContextVar("atelier_route", default="")
_VARS: dict[str, ContextVar[Any]] = {"request_id": REQUEST_ID, "user": USER, "job_id": JOB_ID, "client": CLIENT,
                                     "route": ROUTE}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# LogRecord's own attributes: anything else on a record came from `extra=` and goes into the JSON object (but
# uvicorn's `color_message`, the message again with terminal colour codes).
_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName",
                                                                          "color_message"}


@contextmanager
def bound(**values: Any) -> Iterator[None]:
    """Set request_id, user, job_id, client or route for the block (and the threads it starts), then restore."""
    tokens = [(_VARS[name], _VARS[name].set(value)) for name, value in values.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def bind(**values: Any) -> None:
    """Set request_id, user, job_id, client or route for the rest of the current context (a job's own thread)."""
    for name, value in values.items():
        _VARS[name].set(value)


def current() -> dict[str, Any]:
    """The request id, user, job id, client and route in effect here."""
    return {name: var.get() for name, var in _VARS.items()}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, request_id, user, job_id, then
    any `extra=` fields and the traceback, if any."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": REQUEST_ID.get() or None,
            "user": USER.get(),
            "job_id": JOB_ID.get(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _RESERVED and k not in entry})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # default=str: an `extra=` value JSON cannot write (a path, a datetime) must not cost the line.
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(log_format: str = "text", level: int = logging.INFO) -> None:
    """Send the root logger's records to stderr as text lines or JSON objects (uvicorn's loggers propagate to it)."""
    if log_format not in ("text", "json"):
        raise ValueError(f"log format must be text or json, got {log_format!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)

