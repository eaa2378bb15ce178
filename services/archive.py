"""A whole account as one zip (settings, image jobs with their PNGs and input images, conversations, collections), and
its import into another account or another Atelier with nothing lost.

The archive (format "atelier-account", version 1): jobs.jsonl and conversations.jsonl (one row a line, every column
but the ids, the owner and the replica), collections.json, settings.json, images/<ref>-<index>.png,
inputs/<sha>.png (init images, masks and ControlNet unit pictures), and manifest.json last, naming every other member
with its size and sha256. Rows refer to each other by the archive's own job numbers (`ref`), never by a server's ids.

An import reads the whole archive before it writes anything: paths outside the archive's root, encrypted or
oversized members, a compression ratio of a zip bomb, a member the manifest does not vouch for (or whose bytes it
does not match), a foreign or newer format, a row with unknown or ill-typed fields, a reference to nothing (a job's
input picture the archive lacks, or named outside inputs/), an input picture whose bytes are not its name's sha256,
and an image that fails the upload checks all refuse the archive with a message, and nothing is written. Then the
images go to the store under new keys, the rows in one transaction; if that fails, the images written go again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import re
import secrets
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from peewee import BooleanField, CharField, DateTimeField, Field, FloatField, IntegerField, Model, TextField

from contracts import MAX_CONTROLNET_UNITS, MODES, InvalidRequest
from services import uploads, user_settings
from services.export import Export, ZipWriter, json_bytes, row_to_json
from services.history import ID_CHUNK, HistoryService
from storage.blobs import BlobStore
from storage.connections import IntegrityError, database
from storage.models import (
    Collection,
    CollectionItem,
    Conversation,
    ImageFile,
    ImageJob,
    Message,
    input_path,
)

log = logging.getLogger(__name__)

FORMAT = "atelier-account"
VERSION = 1
CHUNK = 256 * 1024
MAX_JSON_BYTES = 256 * 1024 * 1024  # one JSON member (jobs.jsonl of a large account is the biggest)
BOMB_RATIO = 200  # unpacked : packed, past 1 MiB: no JSON or PNG of Atelier's compresses that far
_IMAGE = re.compile(r"^images/(\d{1,19})-(\d{1,4})\.png$")
_INPUT = re.compile(r"^inputs/([0-9a-f]{64})\.png$")
_SHA = re.compile(r"^[0-9a-f]{64}$")
_FIXED = ("manifest.json", "settings.json", "jobs.jsonl", "conversations.jsonl", "collections.json")
_JSON_TEXT = {"extra", "params"}  # text columns that hold JSON objects
_CHOICES: dict[str, tuple[str, ...]] = {"mode": MODES, "role": ("user", "assistant"),
                                        "status": ("done", "cancelled", "failed")}


def refuse(message: str) -> InvalidRequest:
    """The import's one error: nothing was written."""
    return InvalidRequest({"archive": f"{message}; nothing was imported."})


@dataclass
class _Plan:
    """What a checked archive holds, ready to write."""

    settings: dict[str, Any]
    jobs: list[tuple[int, dict[str, Any], list[dict[str, Any]]]]  # (ref, row, files)
    conversations: list[tuple[dict[str, Any], list[dict[str, Any]]]]
    collections: list[tuple[dict[str, Any], list[tuple[int, Any]]]]
    images: list[str] = field(default_factory=list)  # member names, in job order
    inputs: list[str] = field(default_factory=list)


class ArchiveService:
    """Export a user's whole account; import an archive into a user's account."""

    def __init__(self, history: HistoryService, store: BlobStore, limits: uploads.UploadLimits,
                 max_bytes: int, max_members: int, settings: user_settings.UserSettings | None = None) -> None:
        self.history = history
        self.store = store
        self.limits = limits
        self.max_bytes = max_bytes
        self.max_members = max_members
        self.settings = settings or user_settings.UserSettings()

    # Export -----------------------------------------------------------------------------------------------
    def export(self, user: str) -> Export:
        """The user's account as a streamed zip (finished jobs only: a running one has no images yet)."""
        total = ImageJob.select().where(_finished(user)).count()
        export = Export(f"atelier-account-{user or 'local'}.zip", total, iter(()))
        export.chunks = self._stream(user, export)
        return export

    def _stream(self, user: str, export: Export) -> Iterator[bytes]:
        out = ZipWriter()
        yield from out.member("settings.json", [json_bytes({"settings": self.settings.all(user)})], deflate=True)
        shas: set[str] = set()
        stored: dict[str, bool] = {}  # each input picture looked up once, however many jobs use it
        # Each job's line is written once its images are in, naming only those that were (an image whose file had
        # gone is left out and listed in export.missing): jobs.jsonl follows the images, kept on disk meanwhile.
        with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as lines:
            for job, files in self._jobs(user):
                kept = []
                for f in files:
                    if (blob := self.store.open(f.path)) is None:
                        export.missing.append(f.path)
                        continue
                    yield from out.member(f"images/{job.id}-{f.index}.png", blob.chunks, job.created_at)
                    kept.append(f)
                pictures = set(job_inputs(job).values())
                for sha in pictures - set(stored):
                    stored[sha] = self.store.exists(input_path(sha))
                # A picture gone from the store is named nowhere in the archive (an import refuses a dangling name).
                gone = {sha for sha in pictures if not stored[sha]}
                export.missing += [input_path(sha) for sha in sorted(gone)]
                lines.write(_job_line(job, kept, gone))
                shas |= pictures - gone
                export.done += 1
            lines.seek(0)
            yield from out.member("jobs.jsonl", iter(lambda: lines.read(CHUNK), b""), deflate=True)
        for sha in sorted(shas):
            if (blob := self.store.open(input_path(sha))) is not None:
                yield from out.member(f"inputs/{sha}.png", blob.chunks)
        yield from out.member("conversations.jsonl", _conversation_lines(user), deflate=True)
        yield from out.member("collections.json", [json_bytes(_collections(user))], deflate=True)
        manifest = {"format": FORMAT, "version": VERSION, "exported_at": dt.datetime.now(dt.UTC).isoformat(),
                    "user": user, "members": out.members}
        yield from out.member("manifest.json", [json_bytes(manifest)], deflate=True)
        yield from out.close()

    def _jobs(self, user: str) -> Iterator[tuple[ImageJob, list[ImageFile]]]:
        after = 0
        while jobs := list(ImageJob.select().where(_finished(user) & (ImageJob.id > after))
                           .order_by(ImageJob.id).limit(ID_CHUNK)):
            files: dict[int, list[ImageFile]] = {}
            for f in ImageFile.select().where(ImageFile.job.in_([j.id for j in jobs])).order_by(ImageFile.index):
                files.setdefault(f.job_id, []).append(f)
            for job in jobs:
                yield job, files.get(job.id, [])
            after = jobs[-1].id

    # Import -----------------------------------------------------------------------------------------------
    def import_archive(self, user: str, source: Path | IO[bytes]) -> dict[str, int]:
        """Import an account archive into `user`'s account; counts of what arrived. InvalidRequest({"archive": …})
        for an archive that is damaged, foreign, unsafe or holds a bad image, and then nothing was written."""
        try:
            archive = zipfile.ZipFile(source)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
            raise refuse(f"not a zip archive ({err})") from None
        with archive:
            reader = _Reader(archive, self)
            plan = reader.check()
            return self._write(user, plan, reader)

    def _write(self, user: str, plan: _Plan, reader: _Reader) -> dict[str, int]:
        token = secrets.token_hex(8)
        written: list[str] = []
        try:
            keys = {}
            for name in plan.images:
                keys[name] = f"imports/{token}/{name.removeprefix('images/')}"
                self.store.put_bytes(keys[name], reader.data(name))
                written.append(keys[name])
            for name in plan.inputs:
                key = name  # inputs/<sha>.png: the same name everywhere; kept if already there
                if not self.store.exists(key):
                    self.store.put_bytes(key, reader.data(name))
                    written.append(key)
            with database.atomic():
                counts = _insert(user, plan, keys)
                for key, value in plan.settings.items():
                    self.settings.set(user, key, value)
        except IntegrityError as err:
            self._undo(written)
            raise refuse(f"the archive's rows contradict each other ({err})") from None
        except BaseException:
            self._undo(written)
            raise
        return counts

    def _undo(self, keys: list[str]) -> None:
        # An input another job started to use meanwhile stays.
        shas = [m.group(1) for k in keys if (m := _INPUT.match(k))]
        used = {input_path(sha) for j in ImageJob.select(ImageJob.init_image_sha, ImageJob.mask_sha)
                .where(ImageJob.init_image_sha.in_(shas) | ImageJob.mask_sha.in_(shas))
                for sha in (j.init_image_sha, j.mask_sha)}
        self.history.delete_keys(k for k in keys if k not in used)


def job_inputs(job: ImageJob) -> dict[str, str]:
    """The input pictures a job names, by what they are to it ("init image", "mask", "ControlNet unit 0's picture"):
    their sha256 (the store keeps each as inputs/<sha>.png)."""
    named = {"init image": job.init_image_sha, "mask": job.mask_sha}
    for index, unit in enumerate(json.loads(job.controlnet or "[]")):
        if match := _INPUT.match(unit.get("image") or ""):
            named[f"ControlNet unit {index}'s picture"] = match.group(1)
    return {what: sha for what, sha in named.items() if sha}


def _without(row: dict[str, Any], gone: set[str]) -> dict[str, Any]:
    """A job's row naming none of the `gone` input pictures (blanked, as a job without that picture)."""
    for column in ("init_image_sha", "mask_sha"):
        if row.get(column) in gone:
            row[column] = ""
    units = json.loads(row.get("controlnet") or "[]")
    for unit in units:
        if (match := _INPUT.match(unit.get("image") or "")) and match.group(1) in gone:
            unit["image"] = ""
    row["controlnet"] = json.dumps(units)
    return row


def _job_line(job: ImageJob, files: list[ImageFile], gone: set[str]) -> bytes:
    columns = row_to_json(job, skip=("user", "replica"))
    row = {"ref": job.id, "job": _without(columns, gone) if gone else columns,
           "files": [{**row_to_json(f, skip=("path",)), "name": f"images/{job.id}-{f.index}.png"} for f in files]}
    return json.dumps(row, ensure_ascii=False).encode() + b"\n"


def _finished(user: str) -> Any:
    return (ImageJob.user == user) & (ImageJob.status != "running")


def _conversation_lines(user: str) -> Iterator[bytes]:
    for c in Conversation.select().where(Conversation.user == user).order_by(Conversation.id):
        row = {"conversation": row_to_json(c, skip=("user",)),
               "messages": [row_to_json(m) for m in c.messages.order_by(Message.position)]}
        yield json.dumps(row, ensure_ascii=False).encode() + b"\n"


def _collections(user: str) -> list[dict[str, Any]]:
    out = []
    for c in Collection.select().where(Collection.user == user).order_by(Collection.id):
        items = CollectionItem.select().where(CollectionItem.collection == c).order_by(CollectionItem.id)
        out.append({"collection": row_to_json(c, skip=("user",)),
                    "items": [{"job": i.job_id, "added_at": i.added_at.isoformat()} for i in items]})
    return out


def _insert(user: str, plan: _Plan, keys: dict[str, str]) -> dict[str, int]:
    ids: dict[int, int] = {}
    for ref, row, files in plan.jobs:
        job = ImageJob.create(user=user, **row)
        ids[ref] = job.id
        for f in files:
            ImageFile.create(job=job, path=keys[f.pop("name")], **f)
    for conversation, messages in plan.conversations:
        c = Conversation.create(user=user, **conversation)
        if messages:
            Message.insert_many([{**m, "conversation": c.id} for m in messages]).execute()
    for collection, items in plan.collections:
        # A collection of the same name is joined, not doubled.
        c = Collection.get_or_none((Collection.user == user) & (Collection.name == collection["name"]))
        c = c or Collection.create(user=user, **collection)
        there = {i.job_id for i in CollectionItem.select().where(CollectionItem.collection == c)}
        for ref, added in items:
            if ids[ref] not in there:
                CollectionItem.create(collection=c, job=ids[ref], added_at=added)
    return {"jobs": len(plan.jobs), "images": len(plan.images), "conversations": len(plan.conversations),
            "messages": sum(len(m) for _, m in plan.conversations), "collections": len(plan.collections),
            "settings": len(plan.settings)}


class _Reader:
    """Reads and checks an archive, member by member, within the limits; refuses at the first problem."""

    def __init__(self, archive: zipfile.ZipFile, service: ArchiveService) -> None:
        self.archive = archive
        self.service = service
        self.manifest: dict[str, Any] = {}
        self.pictures: dict[str, str] = {}  # the input pictures the jobs name: sha256 -> the first that names it

    def check(self) -> _Plan:
        """Every check, every byte read; the plan to write."""
        infos = self._members()
        self.manifest = _json(self.data("manifest.json"), "manifest.json")
        if not isinstance(self.manifest, dict) or self.manifest.get("format") != FORMAT:
            raise refuse("this is not an Atelier account archive (its manifest.json does not say so)")
        if self.manifest.get("version") != VERSION:
            raise refuse(f"the archive's format version {self.manifest.get('version')!r} is not one this Atelier "
                         f"reads (it reads version {VERSION})")
        listed = self.manifest.get("members")
        if not isinstance(listed, dict) or set(listed) != set(infos) - {"manifest.json"}:
            raise refuse("the archive's members are not those its manifest lists (damaged or altered)")
        settings = _json(self.data("settings.json"), "settings.json")
        settings = settings.get("settings") if isinstance(settings, dict) else None
        if not isinstance(settings, dict):
            raise refuse("settings.json is damaged")
        try:
            checked = {k: user_settings.check(k, v) for k, v in settings.items()}
        except InvalidRequest as err:
            raise refuse(f"settings.json: {'; '.join(err.errors.values())}") from None
        plan = _Plan(checked, self._jobs(), self._conversations(), [])
        plan.collections = self._collections({ref for ref, _, _ in plan.jobs})
        plan.images = [f["name"] for _, _, files in plan.jobs for f in files]
        plan.inputs = [n for n in infos if _INPUT.match(n)]
        for sha, what in self.pictures.items():
            if input_path(sha) not in infos:
                raise refuse(f"{what} (inputs/{sha}.png) is not in the archive")
        plan.inputs = [n for n in plan.inputs if n.removeprefix("inputs/").removesuffix(".png") in self.pictures]
        if unused := set(infos) - set(_FIXED) - set(plan.images) - set(plan.inputs):
            raise refuse(f"the archive holds files no row names ({', '.join(sorted(unused)[:5])})")
        for name in [*plan.images, *plan.inputs]:
            self._image(name)
        return plan

    def _members(self) -> dict[str, zipfile.ZipInfo]:
        infos = self.archive.infolist()
        if len(infos) > self.service.max_members:
            raise refuse(f"the archive holds {len(infos)} files; at most {self.service.max_members} are allowed")
        found: dict[str, zipfile.ZipInfo] = {}
        total = 0
        for info in infos:
            name = info.filename
            if not (name in _FIXED or _IMAGE.match(name) or _INPUT.match(name)):
                raise refuse(f"the archive holds a path Atelier never writes ({name[:200]!r}: outside its layout, "
                             "or outside its root)")
            if name in found:
                raise refuse(f"the archive holds {name} twice")
            if info.flag_bits & 0x1:
                raise refuse(f"{name} is encrypted")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise refuse(f"{name} is compressed in a way Atelier never writes")
            if info.file_size > 1024 * 1024 and info.file_size > BOMB_RATIO * max(info.compress_size, 1):
                raise refuse(f"{name} unpacks to {info.file_size:,} bytes from {info.compress_size:,} (a zip bomb)")
            total += info.file_size
            found[name] = info
        if total > self.service.max_bytes:
            raise refuse(f"the archive unpacks to {total:,} bytes; at most {self.service.max_bytes:,} are allowed")
        missing = [n for n in ("manifest.json", "settings.json", "jobs.jsonl", "conversations.jsonl",
                               "collections.json") if n not in found]
        if missing:
            raise refuse(f"this is not an Atelier account archive (it lacks {', '.join(missing)})")
        return found

    def data(self, name: str) -> bytes:
        """A member's bytes, read no further than its declared size and checked against the manifest."""
        info = self.archive.getinfo(name)
        limit = info.file_size
        if not _IMAGE.match(name) and not _INPUT.match(name) and limit > MAX_JSON_BYTES:
            raise refuse(f"{name} is larger than {MAX_JSON_BYTES:,} bytes")
        parts, size, digest = [], 0, hashlib.sha256()
        try:
            with self.archive.open(info) as handle:
                while chunk := handle.read(CHUNK):
                    size += len(chunk)
                    if size > limit:  # more than it declared: a forged header
                        raise refuse(f"{name} unpacks to more than the {limit:,} bytes it declares (a zip bomb)")
                    digest.update(chunk)
                    parts.append(chunk)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:  # zlib.error is an Exception too
            raise refuse(f"{name} is damaged ({err})") from None
        except Exception as err:
            if isinstance(err, InvalidRequest):
                raise
            raise refuse(f"{name} is damaged ({type(err).__name__}: {err})") from None
        expected = (self.manifest.get("members") or {}).get(name) if name != "manifest.json" else None
        if expected is not None and (expected.get("size") != size or expected.get("sha256") != digest.hexdigest()):
            raise refuse(f"{name} is not what the manifest says (damaged or altered)")
        return b"".join(parts)

    def _lines(self, name: str) -> Iterator[tuple[int, Any]]:
        for number, line in enumerate(self.data(name).splitlines(), 1):
            if line.strip():
                yield number, _json(line, f"{name} line {number}")

    def _jobs(self) -> list[tuple[int, dict[str, Any], list[dict[str, Any]]]]:
        jobs, refs, names = [], set(), set()
        for number, line in self._lines("jobs.jsonl"):
            where = f"jobs.jsonl line {number}"
            if not isinstance(line, dict) or set(line) != {"ref", "job", "files"} or not _whole(line["ref"]):
                raise refuse(f"{where} is not a job")
            if line["ref"] in refs:
                raise refuse(f"{where}: job {line['ref']} appears twice")
            refs.add(line["ref"])
            row = row_from_json(ImageJob, line["job"], where, skip=("user", "replica"))
            for what, sha in _inputs_of(row, where).items():
                self.pictures.setdefault(sha, f"{where}: the job's {what}")
            if not isinstance(line["files"], list):
                raise refuse(f"{where}: files is not a list")
            files = []
            for f in line["files"]:
                name = f.get("name") if isinstance(f, dict) else None
                match = _IMAGE.match(name or "")
                if match is None or int(match.group(1)) != line["ref"] or name in names:
                    raise refuse(f"{where}: a file's name is not this job's image")
                names.add(name)
                files.append({**row_from_json(ImageFile, {k: v for k, v in f.items() if k != "name"}, where,
                                              skip=("path",)), "name": name})
            jobs.append((line["ref"], row, files))
        return jobs

    def _conversations(self) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
        out = []
        for number, line in self._lines("conversations.jsonl"):
            where = f"conversations.jsonl line {number}"
            if not isinstance(line, dict) or set(line) != {"conversation", "messages"} or not isinstance(
                    line["messages"], list):
                raise refuse(f"{where} is not a conversation")
            out.append((row_from_json(Conversation, line["conversation"], where, skip=("user",)),
                        [row_from_json(Message, m, where) for m in line["messages"]]))
        return out

    def _collections(self, refs: set[int]) -> list[tuple[dict[str, Any], list[tuple[int, Any]]]]:
        data = _json(self.data("collections.json"), "collections.json")
        if not isinstance(data, list):
            raise refuse("collections.json is damaged")
        out = []
        for entry in data:
            if not isinstance(entry, dict) or set(entry) != {"collection", "items"} or not isinstance(
                    entry["items"], list):
                raise refuse("collections.json holds something that is not a collection")
            row = row_from_json(Collection, entry["collection"], "collections.json", skip=("user",))
            items = []
            for item in entry["items"]:
                # Only jobs of this archive: a number naming a job of the server's (anyone's) is refused.
                if not isinstance(item, dict) or item.get("job") not in refs or not isinstance(item.get("added_at"),
                                                                                                str):
                    raise refuse("collections.json names a job the archive does not hold")
                items.append((item["job"], _value(CollectionItem.added_at, item["added_at"], "collections.json")))
            out.append((row, items))
        return out

    def _image(self, name: str) -> None:
        data = self.data(name)
        # An input picture is kept under its digest for every job that names it, anyone's: bytes that are not the
        # digest's would become the picture of another user's later job with the same digest.
        if (match := _INPUT.match(name)) and hashlib.sha256(data).hexdigest() != match.group(1):
            raise refuse(f"{name} is not the picture its name says (its bytes have another sha256)")
        try:
            image = uploads.open_image(data, name, self.service.limits)
            with image:
                if image.format != "PNG":
                    raise refuse(f"{name} is not a PNG")
                image.load()  # decoded: a truncated or damaged image fails here
        except InvalidRequest as err:
            if "archive" in err.errors:
                raise
            raise refuse(f"{name} fails the upload checks: {'; '.join(err.errors.values())}") from None
        except Exception as err:
            raise refuse(f"{name} cannot be decoded ({type(err).__name__})") from None


def _inputs_of(row: dict[str, Any], where: str) -> dict[str, str]:
    """The input pictures an archive's job row names (as job_inputs), each name checked: a digest, and at most
    MAX_CONTROLNET_UNITS units, each an object whose picture, if any, is an inputs/<sha256>.png path."""
    named = {}
    for column, what in (("init_image_sha", "init image"), ("mask_sha", "mask")):
        if sha := row.get(column):
            if not _SHA.match(sha):
                raise refuse(f"{where}: {column} is not a picture's sha256")
            named[what] = sha
    units = _json(str(row.get("controlnet", "[]")).encode(), f"{where}: controlnet")
    if not isinstance(units, list) or len(units) > MAX_CONTROLNET_UNITS or not all(isinstance(u, dict) for u in units):
        raise refuse(f"{where}: controlnet is not a list of at most {MAX_CONTROLNET_UNITS} units")
    for index, unit in enumerate(units):
        if path := unit.get("image"):
            if not (isinstance(path, str) and (match := _INPUT.match(path))):
                raise refuse(f"{where}: ControlNet unit {index}'s picture {str(path)[:80]!r} is not an "
                             "inputs/<sha256>.png of the archive")
            named[f"ControlNet unit {index}'s picture"] = match.group(1)
    return named


def _json(data: bytes, where: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise refuse(f"{where} is not valid JSON") from None


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 2**63 - 1


def row_from_json(model: type[Model], data: Any, where: str, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The column values of one row from an archive, each checked against the model's field; refuse() otherwise."""
    if not isinstance(data, dict):
        raise refuse(f"{where} is not a {model.__name__} row")
    fields = {f.name: f for f in model._meta.sorted_fields
              if f.name != "id" and f.name not in skip and not hasattr(f, "rel_model")}
    if unknown := set(data) - set(fields):
        raise refuse(f"{where}: {model.__name__} has no field(s) {', '.join(sorted(unknown)[:5])}")
    out = {}
    for name, f in fields.items():
        if name in data:
            out[name] = _value(f, data[name], where)
        elif f.default is None and not f.null:
            raise refuse(f"{where}: {model.__name__} lacks {name}")
    return out


def _value(f: Field, value: Any, where: str) -> Any:
    bad = refuse(f"{where}: {f.name} has a value of the wrong kind ({str(value)[:40]!r})")
    if value is None:
        if not f.null:
            raise bad
        return None
    if isinstance(f, DateTimeField):
        try:
            when = dt.datetime.fromisoformat(value)
        except (TypeError, ValueError):
            raise bad from None
        return when.astimezone(dt.UTC) if when.tzinfo else when.replace(tzinfo=dt.UTC)
    if isinstance(f, BooleanField):
        if not isinstance(value, bool):
            raise bad
    elif isinstance(f, IntegerField):
        if isinstance(value, bool) or not isinstance(value, int) or abs(value) >= 2**63:
            raise bad
    elif isinstance(f, FloatField):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise bad
    elif isinstance(f, CharField | TextField):
        if not isinstance(value, str) or (isinstance(f, CharField) and len(value) > 255):
            raise bad
        if f.name in _JSON_TEXT and not isinstance(_json(value.encode(), where), dict):
            raise bad
    if f.name in _CHOICES and value not in _CHOICES[f.name]:
        raise bad
    return value

