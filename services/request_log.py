"""The request log (issue 26): one database row per request and per job, written off the request path.

`RequestLog.record()` only appends to an in-memory queue (a lock and a deque append, about a microsecond); a
writer thread inserts the queue in batches, one transaction each, at least every FLUSH_EVERY_S. A job or a
request therefore never waits for the database, and a busy server writes one INSERT per batch, not per request.

Bounded memory: at most `max_pending` rows wait in memory. While the database is slow or out of reach the writer
keeps retrying its batch (the oldest rows), with a growing pause, and once the queue is full the *newest* rows are
dropped: each is counted (`dropped`, the metric atelier_request_log_rows_total{outcome="dropped"}) and one
warning a minute says how many. A batch the database refuses for its data (a value it cannot store) is written
row by row, and only the rows it refuses are lost, counted as `failed`. `stop()` writes what is pending (the app's
shutdown); rows still unwritten when its deadline passes are counted as dropped and logged.

Retention: rows older than `retention_days` are deleted by a background round every PRUNE_EVERY_S (and once a
minute after start), in chunks, so that no transaction holds the table for long. Every replica may prune: the
deletes are idempotent.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from peewee import DataError, IntegrityError
from peewee import __exception_wrapper__ as wrap_driver_errors

from services import log_context, metrics
from services.jobs import JobMeter
from services.periodic import Periodic
from storage.connections import database
from storage.models import RequestLog as Row
from storage.models import utcnow

log = logging.getLogger(__name__)

KINDS = metrics.KINDS
STATUSES = metrics.STATUSES
BATCH_ROWS = 500
FLUSH_EVERY_S = 1.0
RETRY_MAX_S = 30.0
PRUNE_EVERY_S = 3600.0
PRUNE_FIRST_S = 60.0
PRUNE_CHUNK = 5000
STOP_TIMEOUT_S = 10.0
DROP_WARNING_EVERY_S = 60.0
MAX_CHARS = 255  # the VARCHAR columns' width (PostgreSQL refuses longer values)
MAX_REASON_CHARS = 2000
MAX_PAGE = 500


@dataclass
class RequestRecord:
    """What one request or job did (see storage.models.RequestLog for each field)."""

    kind: str
    status: str
    started_at: dt.datetime = field(default_factory=utcnow)
    request_id: str = ""
    user: str = ""
    client: str = ""
    route: str = ""
    reason: str = ""
    http_status: int | None = None
    duration_s: float | None = None
    queue_wait_s: float | None = None
    model: str = ""
    images: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    gpu_s: float = 0.0
    replica: str = ""
    job_id: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {self.status!r}")

    @classmethod
    def here(cls, kind: str, status: str, **fields: Any) -> RequestRecord:
        """A record whose request id, user, client and route come from the log context unless given."""
        context = log_context.current()
        for name in ("request_id", "client", "route"):
            fields.setdefault(name, context[name])
        if fields.get("user") is None:
            fields["user"] = context["user"] or ""
        return cls(kind, status, **fields)

    @classmethod
    def of_job(cls, kind: str, status: str, meter: JobMeter, **fields: Any) -> RequestRecord:
        """A finished job's record from its meter (start, duration, wait, device seconds) and the log context."""
        duration, wait = meter.elapsed(), meter.queue_wait_s
        return cls.here(kind, status, started_at=utcnow() - dt.timedelta(seconds=duration),
                        duration_s=round(duration, 3), queue_wait_s=None if wait is None else round(wait, 3),
                        gpu_s=round(meter.device_s, 6), **fields)

    def row(self) -> dict[str, Any]:
        """The record as column values, strings cut to what the columns hold."""
        values = {name: getattr(self, name) for name in COLUMNS}  # not dataclasses.asdict: it deep-copies, slowly
        for name in ("request_id", "user", "client", "route", "model", "replica"):
            values[name] = str(values[name])[:MAX_CHARS]
        values["reason"] = str(values["reason"])[:MAX_REASON_CHARS]
        return values


COLUMNS = tuple(f.name for f in dataclasses.fields(RequestRecord))


def insert_rows(records: list[RequestRecord]) -> None:
    """Insert `records` in one transaction with one prepared statement (executemany): peewee's insert_many builds
    the SQL of every value anew, several times slower per row. Database errors come as peewee's exceptions."""
    fields = Row._meta.fields
    order = ("started_at", *(name for name in COLUMNS if name != "started_at"))  # as the tuples below hold them
    columns = ", ".join(f'"{name}"' for name in order)
    # Only our own constant names are formatted in; every value is a parameter.
    sql = f"INSERT INTO {Row._meta.table_name} ({columns}) VALUES ({', '.join([database.param] * len(COLUMNS))})"  # noqa: S608
    # Only the time needs the field's conversion; the other values are plain numbers and strings already.
    started_at = fields["started_at"].db_value
    values = [(started_at(row.pop("started_at")), *row.values()) for row in (record.row() for record in records)]
    # peewee's own translation of the driver's errors (sqlite3's or psycopg's) into its exceptions, as its queries get.
    with wrap_driver_errors, database.atomic():
        database.cursor().executemany(sql, values)


class RequestLog:
    """The batched, bounded writer of request log rows, and its retention round."""

    def __init__(self, enabled: bool = True, max_pending: int = 10000, retention_days: float = 90,
                 batch_rows: int = BATCH_ROWS, flush_every_s: float = FLUSH_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.enabled = enabled
        self.max_pending = max_pending
        self.retention_days = retention_days
        self.batch_rows = batch_rows
        self.flush_every_s = flush_every_s
        self.clock = clock
        self.written = 0
        self.dropped = 0
        self.failed = 0
        self._pending: deque[RequestRecord] = deque()
        self._in_flight = 0  # rows taken by the writer and not yet written
        self._cond = threading.Condition()
        self._stopping = False
        self._urgent = 0  # flush() calls waiting: the writer takes what is there without waiting for a full batch
        self._thread: threading.Thread | None = None
        self._warned_at: float | None = None
        self._dropped_since_warning = 0
        self._pruner = Periodic("request-log-retention", PRUNE_EVERY_S, self.prune, first_s=PRUNE_FIRST_S)

    # --- the request path -----------------------------------------------------------------------
    def record(self, record: RequestRecord) -> bool:
        """Queue one row for the writer; False when it was dropped (the log is off, or full)."""
        if not self.enabled:
            return False
        with self._cond:
            if len(self._pending) + self._in_flight >= self.max_pending:
                self.dropped += 1
                self._dropped_since_warning += 1
                warn = self._warned_at is None or self.clock() - self._warned_at >= DROP_WARNING_EVERY_S
                if warn:
                    self._warned_at, count, self._dropped_since_warning = self.clock(), self._dropped_since_warning, 0
            else:
                self._pending.append(record)
                if len(self._pending) >= self.batch_rows:
                    self._cond.notify_all()
                return True
        metrics.log_rows("dropped", 1)
        if warn:
            log.warning("the request log is %d rows behind (the database is slow or unreachable): dropped %d "
                        "new row(s) since the last warning", self.max_pending, count)
        return False

    @property
    def pending(self) -> int:
        """Rows waiting to be written."""
        with self._cond:
            return len(self._pending) + self._in_flight

    # --- the writer -----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the writer thread and the retention round (once)."""
        if self._thread is not None or not self.enabled:
            return
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="request-log-writer", daemon=True)
        self._thread.start()
        if self.retention_days > 0:
            self._pruner.start()

    def flush(self, timeout: float = STOP_TIMEOUT_S) -> bool:
        """Wait until every row recorded so far is written (or dropped); False when the timeout passed first."""
        deadline = self.clock() + timeout
        with self._cond:
            self._urgent += 1
            self._cond.notify_all()
            try:
                while self._pending or self._in_flight:
                    left = deadline - self.clock()
                    if left <= 0 or self._thread is None:
                        return False
                    self._cond.wait(left)
            finally:
                self._urgent -= 1
        return True

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Write what is pending, then end the writer and the retention round; what could not be written by then
        is counted as dropped and logged."""
        self._pruner.stop()
        thread = self._thread
        if thread is None:
            return
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        thread.join(timeout)
        self._thread = None
        with self._cond:
            lost = len(self._pending) + self._in_flight
            self._pending.clear()
            self.dropped += lost
        if lost:
            metrics.log_rows("dropped", lost)
            log.error("the request log could not write %d row(s) before shutting down; they are lost", lost)

    def _run(self) -> None:
        pause = 0.0
        while True:
            batch = self._next_batch(pause)
            if batch is None:
                return
            if self._write(batch):
                pause = 0.0
                with self._cond:
                    self._in_flight = 0
                    self._cond.notify_all()
                continue
            # The database is slow or out of reach: keep the rows (oldest first) and try again after a pause.
            with self._cond:
                self._pending.extendleft(reversed(batch))
                self._in_flight = 0
                if self._stopping:
                    return
            pause = min(RETRY_MAX_S, max(0.5, pause * 2))

    def _next_batch(self, pause: float) -> list[RequestRecord] | None:
        """The next rows to write, after `pause` (a retry's) or once a batch is full or FLUSH_EVERY_S passed; None
        when stopping with nothing left."""
        with self._cond:
            deadline = self.clock() + (pause or self.flush_every_s)
            while not self._stopping and (pause or not self._due()):
                left = deadline - self.clock()
                if left <= 0:
                    break
                self._cond.wait(left)
            if not self._pending:
                return None if self._stopping else []
            count = min(self.batch_rows, len(self._pending))
            batch = [self._pending.popleft() for _ in range(count)]
            self._in_flight = count
            return batch

    def _due(self) -> bool:
        """Whether the pending rows are to be written now: a full batch, or any row while flush() waits."""
        return len(self._pending) >= self.batch_rows or bool(self._urgent and self._pending)

    def _write(self, batch: list[RequestRecord]) -> bool:
        """Insert `batch` in one transaction; True when done with it (written, or refused for its data row by
        row), False to retry later (the database failed)."""
        if not batch:
            return True
        try:
            insert_rows(batch)
        except (DataError, IntegrityError):
            self._write_one_by_one(batch)
            return True
        except Exception:
            log.warning("the request log could not write %d row(s); retrying", len(batch), exc_info=True)
            return False
        self.written += len(batch)
        metrics.log_rows("written", len(batch))
        return True

    def _write_one_by_one(self, batch: list[RequestRecord]) -> None:
        for record in batch:
            try:
                insert_rows([record])
            except (DataError, IntegrityError) as err:
                self.failed += 1
                metrics.log_rows("failed", 1)
                log.error("the database refused a request log row (%s): %r", err, record)
            else:
                self.written += 1
                metrics.log_rows("written", 1)

    # --- retention ------------------------------------------------------------------------------
    def prune(self, now: dt.datetime | None = None) -> int:
        """Delete the rows older than the retention period (none when it is 0); return how many went."""
        if self.retention_days <= 0:
            return 0
        cutoff = (now or utcnow()) - dt.timedelta(days=self.retention_days)
        removed = 0
        while True:
            chunk = Row.select(Row.id).where(Row.started_at < cutoff).order_by(Row.id).limit(PRUNE_CHUNK)
            with database.atomic():
                count = Row.delete().where(Row.id.in_(chunk)).execute()
            removed += count
            if count < PRUNE_CHUNK:
                break
        if removed:
            log.info("request log retention: deleted %d row(s) older than %g days", removed, self.retention_days)
        return removed

    def describe(self) -> dict[str, Any]:
        """The writer's state, for /api/health."""
        return {"enabled": self.enabled, "pending": self.pending, "written": self.written, "dropped": self.dropped,
                "failed": self.failed, "retention_days": self.retention_days}
