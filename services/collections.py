"""Collections: named sets of image jobs a user makes and adds to. Always one user's own: another user's collection
or job is answered as one that does not exist."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from peewee import fn

from contracts import InvalidRequest
from services.history import ID_CHUNK, check_ids
from storage.connections import IntegrityError, database
from storage.models import Collection, CollectionItem, ImageFile, ImageJob, utcnow

MAX_NAME_CHARS = 100
MAX_COLLECTIONS = 1000  # per user


def _summary(c: Collection, jobs: int, cover: int | None) -> dict[str, Any]:
    return {"collection_id": c.id, "name": c.name, "created_at": c.created_at.isoformat(),
            "updated_at": c.updated_at.isoformat(), "jobs": jobs, "cover_file_id": cover}


def check_name(name: Any) -> str:
    """A collection name, spaces tidied; InvalidRequest when empty or too long."""
    tidy = " ".join(name.split()) if isinstance(name, str) else ""
    if not tidy:
        raise InvalidRequest({"name": "name must not be empty."})
    if len(tidy) > MAX_NAME_CHARS:
        raise InvalidRequest({"name": f"name is {len(tidy)} characters; at most {MAX_NAME_CHARS} are allowed."})
    return tidy


class CollectionService:
    """Create, list, rename and delete a user's collections; add and remove their jobs."""

    def list(self, user: str) -> list[dict[str, Any]]:
        """The user's collections by name, each with its number of jobs and the image file id of its newest job's
        first image (a cover for the UIs; None when empty)."""
        rows = list(Collection.select().where(Collection.user == user).order_by(Collection.name, Collection.id))
        ids = [c.id for c in rows]
        counts = dict(CollectionItem.select(CollectionItem.collection, fn.COUNT(CollectionItem.id))
                      .where(CollectionItem.collection.in_(ids)).group_by(CollectionItem.collection).tuples())
        return [_summary(c, counts.get(c.id, 0), self._cover(c.id)) for c in rows]

    def get(self, user: str, collection_id: int) -> dict[str, Any] | None:
        """One collection's summary, or None when it is not the user's."""
        c = self._mine(user, collection_id)
        if c is None:
            return None
        return _summary(c, CollectionItem.select().where(CollectionItem.collection == c).count(), self._cover(c.id))

    def create(self, user: str, name: str) -> dict[str, Any]:
        """A new empty collection; InvalidRequest for a bad name or one the user already has."""
        tidy = check_name(name)
        try:
            with database.atomic():
                if Collection.select().where(Collection.user == user).count() >= MAX_COLLECTIONS:
                    raise InvalidRequest({"name": f"you have {MAX_COLLECTIONS} collections, the most allowed."})
                if Collection.select().where((Collection.user == user) & (Collection.name == tidy)).exists():
                    raise InvalidRequest({"name": f"you already have a collection named {tidy!r}."})
                c = Collection.create(user=user, name=tidy)
        except IntegrityError:  # another replica made the same name meanwhile
            raise InvalidRequest({"name": f"you already have a collection named {tidy!r}."}) from None
        return _summary(c, 0, None)

    def rename(self, user: str, collection_id: int, name: str) -> dict[str, Any]:
        """Give a collection a new name; InvalidRequest for a bad or taken name or a collection not the user's."""
        tidy = check_name(name)
        try:
            with database.atomic():
                c = self._require(user, collection_id)
                if Collection.select().where((Collection.user == user) & (Collection.name == tidy)
                                             & (Collection.id != c.id)).exists():
                    raise InvalidRequest({"name": f"you already have a collection named {tidy!r}."})
                c.name, c.updated_at = tidy, utcnow()
                c.save()
        except IntegrityError:
            raise InvalidRequest({"name": f"you already have a collection named {tidy!r}."}) from None
        return self.get(user, collection_id) or {}

    def delete(self, user: str, collection_id: int) -> bool:
        """Delete a collection (its jobs stay in history); False when it is not the user's."""
        c = self._mine(user, collection_id)
        return bool(c is not None and c.delete_instance(recursive=True))

    def add(self, user: str, collection_id: int, job_ids: Iterable[int]) -> dict[str, Any]:
        """Add jobs to a collection; every job must be the user's, or nothing is added (InvalidRequest names the
        others). {"added": n, "already": n}."""
        wanted = list(dict.fromkeys(check_ids(job_ids, "job_ids")))
        with database.atomic():
            c = self._require(user, collection_id)
            mine: set[int] = set()
            for at in range(0, len(wanted), ID_CHUNK):
                chunk = wanted[at:at + ID_CHUNK]
                mine |= {j.id for j in ImageJob.select(ImageJob.id).where(ImageJob.id.in_(chunk)
                                                                          & (ImageJob.user == user))}
            if others := [i for i in wanted if i not in mine]:
                raise InvalidRequest({"job_ids": f"no such job(s) of yours: {', '.join(map(str, others[:20]))}"
                                                 f"{' …' if len(others) > 20 else ''}; nothing was added."})
            there = set(self._job_ids(c.id))
            new = [i for i in wanted if i not in there]
            for at in range(0, len(new), ID_CHUNK):
                CollectionItem.insert_many([{"collection": c.id, "job": i, "added_at": utcnow()}
                                            for i in new[at:at + ID_CHUNK]]).execute()
            if new:
                Collection.update(updated_at=utcnow()).where(Collection.id == c.id).execute()
        return {"added": len(new), "already": len(wanted) - len(new)}

    def remove(self, user: str, collection_id: int, job_ids: Iterable[int]) -> dict[str, Any]:
        """Take jobs out of a collection (they stay in history); {"removed": n}."""
        wanted = list(dict.fromkeys(check_ids(job_ids, "job_ids")))
        removed = 0
        with database.atomic():
            c = self._require(user, collection_id)
            for at in range(0, len(wanted), ID_CHUNK):
                removed += CollectionItem.delete().where((CollectionItem.collection == c.id)
                                                         & CollectionItem.job.in_(wanted[at:at + ID_CHUNK])).execute()
            if removed:
                Collection.update(updated_at=utcnow()).where(Collection.id == c.id).execute()
        return {"removed": removed}

    def job_ids(self, user: str, collection_id: int) -> list[int]:
        """The collection's job ids, oldest added first; InvalidRequest when it is not the user's."""
        return self._job_ids(self._require(user, collection_id).id)

    @staticmethod
    def _job_ids(collection_id: int) -> list[int]:
        return [item.job_id for item in CollectionItem.select(CollectionItem.job)
                .where(CollectionItem.collection == collection_id).order_by(CollectionItem.id)]

    @staticmethod
    def _cover(collection_id: int) -> int | None:
        row = (ImageFile.select(ImageFile.id).join(CollectionItem, on=(CollectionItem.job == ImageFile.job))
               .where(CollectionItem.collection == collection_id)
               .order_by(CollectionItem.id.desc(), ImageFile.index).first())
        return row.id if row is not None else None

    @staticmethod
    def _mine(user: str, collection_id: int) -> Collection | None:
        check_ids([collection_id], "collection_id")
        return Collection.get_or_none((Collection.id == collection_id) & (Collection.user == user))

    def _require(self, user: str, collection_id: int) -> Collection:
        c = self._mine(user, collection_id)
        if c is None:
            raise InvalidRequest({"collection_id": f"collection {collection_id} does not exist."})
        return c
