"""Exports: a conversation as Markdown, as Atelier's own JSON or as OpenAI messages; image jobs as a zip of their PNGs
(A1111's parameters inside each) with a manifest.json, streamed as it is made.

The zip is written by the standard library's zipfile into a sink that the generator empties after every chunk:
zipfile supports output it cannot seek (it then writes each member's sizes and CRC after its data), so memory holds
one chunk at a time, whatever the number of images. Chosen over zipstream-ng and stream-zip (both well kept, both
doing the same) because it adds no dependency and the importer reads archives back with the same module; PNGs are
stored, not deflated (they are compressed already), JSON is deflated.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from peewee import Model, prefetch

from contracts import InvalidRequest
from services.chat import as_model_turn
from services.collections import CollectionService
from services.history import ID_CHUNK, HistoryService, check_ids, job_to_dict
from services.search import SearchService
from storage.blobs import BlobStore
from storage.models import Conversation, ImageFile, ImageJob, Message

FORMATS = ("markdown", "json", "openai")
MAX_EXPORT_JOBS = 100_000
CONVERSATION_FORMAT = "atelier-conversation"
IMAGES_FORMAT = "atelier-images"


class _Sink(io.RawIOBase):
    """Where zipfile writes: bytes kept until the generator takes them; no seek, no tell."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def _stamp(when: dt.datetime | None) -> tuple[int, int, int, int, int, int]:
    when = when or dt.datetime.now(dt.UTC)
    return max(when.timetuple()[:6], (1980, 1, 1, 0, 0, 0))  # zip times start in 1980


class ZipWriter:
    """Members written one after another into a zip that streams out chunk by chunk; each member's size and
    sha256 are recorded (for a manifest written last)."""

    def __init__(self) -> None:
        self._sink = _Sink()
        self._zip = zipfile.ZipFile(self._sink, "w", allowZip64=True)
        self.members: dict[str, dict[str, Any]] = {}

    def member(self, name: str, chunks: Iterable[bytes], when: dt.datetime | None = None,
               deflate: bool = False) -> Iterator[bytes]:
        """Write one member from `chunks`, yielding the zip's bytes as they come."""
        info = zipfile.ZipInfo(name, _stamp(when))
        info.compress_type = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
        digest, size = hashlib.sha256(), 0
        # force_zip64: the size is not known before the data, and a member may pass 2 GiB (a large jsonl).
        with self._zip.open(info, "w", force_zip64=True) as out:
            for chunk in chunks:
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                if data := self._sink.take():
                    yield data
        self.members[name] = {"size": size, "sha256": digest.hexdigest()}
        yield self._sink.take()

    def close(self) -> Iterator[bytes]:
        """Write the central directory; yield the last bytes."""
        self._zip.close()
        yield self._sink.take()


def json_bytes(value: Any) -> bytes:
    """UTF-8 JSON, readable."""
    return json.dumps(value, ensure_ascii=False, indent=1, default=str).encode()


@dataclass
class Export:
    """A streamed download: its file name, how many jobs it holds, and how far the stream has got (`done`), for a
    progress indicator; iterate `chunks` once to get the bytes."""

    filename: str
    total: int
    chunks: Iterator[bytes]
    done: int = 0
    missing: list[str] = field(default_factory=list)  # images whose file or object had gone


def row_to_json(row: Model, skip: Iterable[str] = ()) -> dict[str, Any]:
    """Every column of a row as JSON-ready values (times in ISO 8601), the foreign keys and `skip` left out."""
    out: dict[str, Any] = {}
    for f in row._meta.sorted_fields:
        if f.name in ("id", *skip) or hasattr(f, "rel_model"):  # ids and references are the server's own
            continue
        value = row.__data__.get(f.name)
        out[f.name] = value.isoformat() if isinstance(value, dt.datetime) else value
    return out


class ExportService:
    """Conversations and images out of Atelier, one user's own only."""

    def __init__(self, history: HistoryService, collections: CollectionService, search: SearchService,
                 store: BlobStore) -> None:
        self.history = history
        self.collections = collections
        self.search = search
        self.store = store

    # Conversations --------------------------------------------------------------------------------------
    def conversation(self, user: str, conversation_id: int, fmt: str) -> tuple[str, str, bytes]:
        """(file name, media type, bytes) of one of the user's conversations in `fmt` (markdown, json, openai);
        InvalidRequest for another format or a conversation that is not theirs."""
        if fmt not in FORMATS:
            raise InvalidRequest({"format": f"format must be one of {', '.join(FORMATS)}, got {fmt!r}."})
        check_ids([conversation_id], "conversation_id")
        c = Conversation.get_or_none((Conversation.id == conversation_id) & (Conversation.user == user))
        if c is None:
            raise InvalidRequest({"conversation_id": f"conversation {conversation_id} does not exist."})
        messages = list(c.messages.order_by(Message.position))
        stem = f"conversation-{c.id}"
        if fmt == "markdown":
            return f"{stem}.md", "text/markdown; charset=utf-8", conversation_markdown(c, messages).encode()
        if fmt == "openai":
            return f"{stem}.openai.json", "application/json", json_bytes(
                {"messages": [m for m in map(as_model_turn, messages) if m is not None]})
        return f"{stem}.json", "application/json", json_bytes(conversation_json(c, messages))

    # Images ---------------------------------------------------------------------------------------------
    def job_ids(self, user: str, job_ids: Iterable[int] | None = None, collection_id: int | None = None,
                query: dict[str, Any] | None = None, everything: bool = False) -> list[int]:
        """The user's job ids that an export names (exactly one way): a selection (every id must be theirs, or
        InvalidRequest names the others), a collection, a search (`query`: SearchService.images' q and filters),
        or everything."""
        ways = [job_ids is not None, collection_id is not None, query is not None, everything]
        if sum(ways) != 1:
            raise InvalidRequest({"selection": "name the images one way: job_ids, collection_id, query or all."})
        if job_ids is not None:
            return self._own(user, check_ids(job_ids, "job_ids"))
        if collection_id is not None:
            return self.collections.job_ids(user, collection_id)
        if query is not None:
            return self._found(user, dict(query))
        return [j.id for j in ImageJob.select(ImageJob.id).where(ImageJob.user == user).order_by(ImageJob.id)
                .limit(MAX_EXPORT_JOBS)]

    def _own(self, user: str, wanted: list[int]) -> list[int]:
        wanted = list(dict.fromkeys(wanted))
        mine: set[int] = set()
        for at in range(0, len(wanted), ID_CHUNK):
            mine |= {j.id for j in ImageJob.select(ImageJob.id).where(
                ImageJob.id.in_(wanted[at:at + ID_CHUNK]) & (ImageJob.user == user))}
        if others := [i for i in wanted if i not in mine]:
            raise InvalidRequest({"job_ids": f"no such job(s) of yours: {', '.join(map(str, others[:20]))}"
                                             f"{' …' if len(others) > 20 else ''}; nothing was exported."})
        return wanted

    def _found(self, user: str, query: dict[str, Any]) -> list[int]:
        q = query.pop("q", "")
        for name in ("cursor", "limit"):
            query.pop(name, None)
        found: list[int] = []
        cursor = None
        while len(found) < MAX_EXPORT_JOBS:
            page = self.search.images(user, q, cursor=cursor, limit=200, **query)
            found += [j["job_id"] for j in page["jobs"]]
            if (cursor := page["next_cursor"]) is None:
                break
        return found[:MAX_EXPORT_JOBS]

    def file_count(self, job_ids: list[int]) -> int:
        """How many images the jobs have (an export's progress counts them)."""
        return sum(ImageFile.select().where(ImageFile.job.in_(job_ids[at:at + ID_CHUNK])).count()
                   for at in range(0, len(job_ids), ID_CHUNK))

    def images_zip(self, user: str, job_ids: list[int], name: str = "atelier-images") -> Export:
        """A zip of the jobs' PNGs as stored (their A1111 `parameters` inside), then manifest.json: each job's
        settings and its files' names, sizes and sha256. Call job_ids() first: ids here must be the user's own."""
        export = Export(f"{name}.zip", len(job_ids), iter(()))
        export.chunks = self._stream_images(user, job_ids, export)
        return export

    def _stream_images(self, user: str, job_ids: list[int], export: Export) -> Iterator[bytes]:
        out = ZipWriter()
        with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as listing:
            first = True
            for at in range(0, len(job_ids), ID_CHUNK):
                chunk = job_ids[at:at + ID_CHUNK]
                jobs = prefetch(ImageJob.select().where(ImageJob.id.in_(chunk) & (ImageJob.user == user))
                                .order_by(ImageJob.id), ImageFile.select())
                for job in jobs:
                    entry = job_to_dict(job)
                    for f in entry["files"]:
                        f["name"] = f"images/{job.id:06d}-{f['id']}-{f['seed']}.png"
                        yield from self._image(out, f, job.created_at, export)
                    listing.write((b"" if first else b",\n") + json.dumps(entry, default=str).encode())
                    first = False
                    export.done += 1
            listing.seek(0)
            head = json.dumps({"format": IMAGES_FORMAT, "version": 1, "exported_at": dt.datetime.now(dt.UTC)
                               .isoformat(), "count": export.done, "missing": export.missing})[:-1].encode()
            yield from out.member("manifest.json", _concat(head + b', "jobs": [\n', _read_chunks(listing),
                                                           b"\n]}\n"), deflate=True)
        yield from out.close()

    def _image(self, out: ZipWriter, f: dict[str, Any], when: dt.datetime, export: Export) -> Iterator[bytes]:
        blob = self.store.open(f["file"])
        if blob is None:
            export.missing.append(f["file"])
            f["missing"] = True
            return
        yield from out.member(f["name"], blob.chunks, when)
        f.update(out.members[f["name"]])


def _read_chunks(handle: Any, size: int = 256 * 1024) -> Iterator[bytes]:
    while chunk := handle.read(size):
        yield chunk


def _concat(head: bytes, middle: Iterable[bytes], tail: bytes) -> Iterator[bytes]:
    yield head
    yield from middle
    yield tail


def conversation_json(c: Conversation, messages: list[Message]) -> dict[str, Any]:
    """Atelier's own, lossless form: every column of the conversation and of each message."""
    return {"format": CONVERSATION_FORMAT, "version": 1, "conversation": row_to_json(c, skip=("user",)),
            "messages": [row_to_json(m) for m in messages]}


def _details(text: str) -> str:
    # A closing tag in the reasoning would end the fold early.
    return text.replace("</details>", "&lt;/details>")


def conversation_markdown(c: Conversation, messages: list[Message]) -> str:
    """The conversation as Markdown: each turn under a heading, the reasoning folded in a <details> block."""
    lines = [f"# {c.title or 'Conversation'}", "", f"*{c.created_at:%Y-%m-%d %H:%M} UTC*", ""]
    for m in messages:
        if m.role == "user":
            lines += ["## You", "", m.content, ""]
            continue
        lines += [f"## Assistant{f' ({m.model})' if m.model else ''}", ""]
        if m.reasoning.strip():
            took = f" ({m.reasoning_s:.1f} s)" if m.reasoning_s is not None else ""
            lines += ["<details>", f"<summary>Reasoning{took}</summary>", "", _details(m.reasoning), "", "</details>",
                      ""]
        lines += [m.content, ""]
        if m.status != "done":
            lines += [f"*{'Stopped' if m.status == 'cancelled' else 'Failed'}{': ' + m.error if m.error else ''}*", ""]
    return "\n".join(lines)

