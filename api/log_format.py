"""How log lines are written: text, or with ATELIER_LOG_FORMAT=json one JSON object per line carrying the request
id, user and job id of the work it is about (the context variables of services/log_context.py)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any

from services.log_context import JOB_ID, REQUEST_ID, USER

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# LogRecord's own attributes: anything else on a record came from `extra=` and goes into the JSON object (but
# uvicorn's `color_message`, the message again with terminal colour codes).
_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName",
                                                                          "color_message"}


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

