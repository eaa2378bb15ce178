"""The image editor's pending pieces: per owner, read once, a few layers, and bounded by bytes, entries and age
whatever order or number of pieces arrive."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from services.editor_blobs import ENTRY_OVERHEAD, MAX_LAYERS, BlobBudget, PendingBlobs

KIB = 1024


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def store(owner_kib: int = 64, total_kib: int = 128, owner_entries: int = 4, entries: int = 8,
          clock: Clock | None = None) -> PendingBlobs:
    budget = BlobBudget(max_bytes=total_kib * KIB, owner_max_bytes=owner_kib * KIB, max_entries=entries,
                        owner_max_entries=owner_entries)
    return PendingBlobs(budget, max_age_s=60, clock=clock or Clock())


def test_a_submission_is_its_owners_and_read_once() -> None:
    pending = store()
    assert pending.put("alice", "v1", "background", None, b"b" * 10) == ""
    assert pending.put("alice", "v1", "layer", 0, b"l" * 5) == ""
    assert pending.take("bob", "v1") is None  # another owner's id reaches nothing, and leaves it in place
    taken = pending.take("alice", "v1")
    assert taken is not None
    assert (taken.background, taken.layers) == (b"b" * 10, {0: b"l" * 5})
    assert pending.take("alice", "v1") is None
    assert len(pending) == 0


def test_a_piece_sent_again_replaces_the_one_before() -> None:
    pending = store()
    for size in (30, 10):
        pending.put("alice", "v1", "background", None, b"b" * size * KIB)
    assert pending.nbytes == ENTRY_OVERHEAD + 10 * KIB


@pytest.mark.parametrize(("kind", "index"), [("layer", None), ("layer", -1), ("layer", MAX_LAYERS),
                                             ("layer", 50_000_000), ("mask", None), ("composite", None)])
def test_pieces_outside_the_editors_layers_are_refused_before_anything_is_kept(kind: str, index: int | None) -> None:
    pending = store()
    with pytest.raises(ValueError, match="piece|layer index"):
        pending.put("alice", "v1", kind, index, b"x")
    assert len(pending) == 0


def test_an_owner_over_its_budget_loses_its_oldest_submissions_first_and_no_one_elses() -> None:
    pending = store(owner_kib=64, total_kib=256)
    pending.put("bob", "b1", "background", None, b"b" * 40 * KIB)
    for name in ("a1", "a2", "a3"):
        pending.put("alice", name, "background", None, b"a" * 30 * KIB)
    assert pending.take("alice", "a1") is None
    assert pending.take("alice", "a2") is not None
    assert pending.take("alice", "a3") is not None
    assert pending.take("bob", "b1") is not None


def test_a_submission_too_large_for_one_owner_is_refused_and_says_why() -> None:
    pending = store(owner_kib=64)
    assert pending.put("alice", "v1", "background", None, b"b" * 40 * KIB) == ""
    problem = pending.put("alice", "v1", "layer", 0, b"l" * 40 * KIB)
    assert "0.1 MB" in problem
    assert pending.put("alice", "v1", "layer", 1, b"l") == problem  # later pieces of it are refused too
    assert pending.nbytes == ENTRY_OVERHEAD
    taken = pending.take("alice", "v1")
    assert taken is not None
    assert (taken.background, taken.layers, taken.refused) == (None, {}, problem)


def test_everyones_budget_holds_in_bytes_and_entries() -> None:
    pending = store(owner_kib=64, total_kib=128, owner_entries=4, entries=8)
    for owner in range(6):
        pending.put(f"user{owner}", "v", "background", None, b"x" * 40 * KIB)
    assert pending.nbytes <= 128 * KIB
    assert pending.take("user5", "v") is not None  # the newest stays, the oldest went
    assert pending.take("user0", "v") is None
    for owner in range(20):
        pending.refuse(f"user{owner}", "v", "no")
    assert len(pending) == 8


def test_an_owner_cannot_hold_more_entries_than_its_share() -> None:
    pending = store(owner_entries=4, entries=8)
    for index in range(50):
        pending.put("alice", f"v{index}", "layer", 0, b"x")
    assert len(pending) == 4
    assert pending.take("alice", "v49") is not None


def test_abandoned_submissions_expire() -> None:
    clock = Clock()
    pending = store(clock=clock)
    pending.put("alice", "old", "background", None, b"x")
    clock.now = 30
    pending.put("alice", "new", "background", None, b"y")
    clock.now = 61
    assert pending.take("alice", "old") is None
    assert pending.take("alice", "new") is not None


def test_pieces_put_from_many_threads_stay_within_the_budget() -> None:
    pending = store(owner_kib=64, total_kib=128, owner_entries=4, entries=8)

    def put(index: int) -> None:
        pending.put(f"user{index % 5}", f"v{index}", "background", None, b"x" * 20 * KIB)
        pending.take(f"user{(index + 1) % 5}", f"v{index - 3}")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(400)))
    assert pending.nbytes <= 128 * KIB
    assert len(pending) <= 8


def test_a_budget_that_could_not_hold_one_submission_is_refused() -> None:
    with pytest.raises(ValueError, match="inconsistent"):
        BlobBudget(max_bytes=KIB, owner_max_bytes=2 * KIB)
    with pytest.raises(ValueError, match="inconsistent"):
        BlobBudget(max_bytes=4 * KIB, owner_max_bytes=2 * KIB, max_entries=1, owner_max_entries=2)
    budget = BlobBudget.for_uploads(20 * 2**20)
    assert budget.owner_max_bytes >= 2 * 20 * 2**20
