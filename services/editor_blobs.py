"""The image editor's pieces between their upload and the event that reads them, bounded in memory.

Gradio's ImageEditor sends its background and each stroke layer to /gradio_api/component_server (`accept_blobs`), one
request per piece under a random id of the client's choosing, and its event then names only that id. Gradio keeps the
pieces in a dict on the component: shared by every user, for ever when no event follows, with a layer list as long
as the client's `index` says. Atelier keeps them here instead (api/internal_routes.py fills it, the inpaint tab takes
them): under their owner, so that no one's id reaches another user's event; a few layers at most; within a byte and
an entry budget overall and per owner (the oldest submissions go first); and for `max_age_s` at most.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

# Layers a submission may carry: the inpaint editor has one (layers=False); a little room for an editor with more.
MAX_LAYERS = 4
# A submission is read by the event that follows its upload within seconds; one older than this was abandoned.
MAX_AGE_S = 600.0
# Python's own cost of an entry (key, record, dict slot), counted with its bytes so that a flood of empty
# submissions is bounded by the byte budget as well as by the entry counts.
ENTRY_OVERHEAD = 1024

Key = tuple[str, str]  # (owner, the client's id)


@dataclass
class Submission:
    """One editor value in pieces: the background and the stroke layers by index, or why a piece was refused."""

    owner: str
    created: float
    background: bytes | None = None
    layers: dict[int, bytes] = field(default_factory=dict)
    refused: str = ""  # the event shows this instead of "upload an image first"

    @property
    def size(self) -> int:
        """Bytes held, with the entry's own overhead."""
        return ENTRY_OVERHEAD + len(self.background or b"") + sum(len(layer) for layer in self.layers.values())


@dataclass(frozen=True)
class BlobBudget:
    """How much the pending pieces may hold: bytes and submissions, in all and per owner."""

    max_bytes: int
    owner_max_bytes: int
    max_entries: int = 4096
    owner_max_entries: int = 16

    def __post_init__(self) -> None:
        # An owner's newest submission always fits in all: trimming never has to drop it.
        if not (ENTRY_OVERHEAD <= self.owner_max_bytes <= self.max_bytes and 1 <= self.owner_max_entries
                <= self.max_entries):
            raise ValueError(f"inconsistent budget {self}")

    @classmethod
    def for_uploads(cls, upload_max_bytes: int) -> BlobBudget:
        """Room for one submission at the upload limit per owner (a background and a layer), four in all."""
        owner = 2 * upload_max_bytes + 2 * ENTRY_OVERHEAD
        return cls(max_bytes=4 * owner, owner_max_bytes=owner)


class PendingBlobs:
    """Pieces uploaded by the image editor, kept per (owner, id) until an event takes them; thread-safe (the route
    puts from the event loop, the event takes from a worker thread)."""

    def __init__(self, budget: BlobBudget, max_age_s: float = MAX_AGE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.budget = budget
        self.max_age_s = max_age_s
        self.clock = clock
        self._entries: OrderedDict[Key, Submission] = OrderedDict()  # oldest first
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        """Bytes held now, entry overhead included."""
        with self._lock:
            return sum(entry.size for entry in self._entries.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def put(self, owner: str, blob_id: str, kind: str, index: int | None, blob: bytes) -> str:
        """Keep one piece ("background", or "layer" with its index); '' when kept, else why not (the piece is then
        dropped and the submission remembers why)."""
        if kind not in ("background", "layer"):
            raise ValueError(f"unknown piece {kind!r}")
        if kind == "layer" and (index is None or not 0 <= index < MAX_LAYERS):
            raise ValueError(f"a layer index must be 0 to {MAX_LAYERS - 1}")
        with self._lock:
            entry = self._entry(owner, blob_id)
            if entry.refused:  # a piece of it was refused already: the event will say why
                return entry.refused
            if kind == "background":
                entry.background = blob
            else:
                entry.layers[index] = blob  # type: ignore[index]  # checked above
            if entry.size > self.budget.owner_max_bytes:
                entry.background, entry.layers = None, {}
                entry.refused = (f"the editor's image and strokes together are over the "
                                 f"{self.budget.owner_max_bytes / 2**20:.1f} MB one upload may hold.")
                return entry.refused
            self._trim((owner, blob_id))
            return ""

    def refuse(self, owner: str, blob_id: str, message: str) -> None:
        """Remember why a piece of this submission was refused; the pieces already kept go."""
        with self._lock:
            entry = self._entry(owner, blob_id)
            entry.background, entry.layers, entry.refused = None, {}, message
            self._trim((owner, blob_id))

    def take(self, owner: str, blob_id: str) -> Submission | None:
        """The owner's submission under this id, removed; None when there is none (never sent, expired, evicted,
        or another owner's)."""
        with self._lock:
            self._expire()
            return self._entries.pop((owner, blob_id), None)

    def _entry(self, owner: str, blob_id: str) -> Submission:
        """The submission under (owner, id), made if new, now the newest."""
        self._expire()
        key = (owner, blob_id)
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = Submission(owner=owner, created=self.clock())
        self._entries.move_to_end(key)
        return entry

    def _expire(self) -> None:
        cutoff = self.clock() - self.max_age_s
        while self._entries and next(iter(self._entries.values())).created < cutoff:
            self._entries.popitem(last=False)

    def _trim(self, keep: Key) -> None:
        """Drop the oldest submissions (never `keep`) until the owner's and then everyone's budget hold."""
        owner = keep[0]

        def over(mine: bool) -> bool:
            entries = [e for e in self._entries.values() if e.owner == owner] if mine else self._entries.values()
            count, size = (self.budget.owner_max_entries, self.budget.owner_max_bytes) if mine else (
                self.budget.max_entries, self.budget.max_bytes)
            return len(entries) > count or sum(e.size for e in entries) > size

        for mine in (True, False):
            while over(mine):
                oldest = next(k for k, e in self._entries.items() if k != keep and (not mine or e.owner == owner))
                del self._entries[oldest]
