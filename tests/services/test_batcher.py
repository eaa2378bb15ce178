"""Micro-batching: users in turn, no waiting for partners, and a Stop inside a batch (fake and tiny backends)."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from contracts import ImageRequest
from pipelines.image_base import BatchItem, GeneratedImage, JobCancelled, StepUpdate
from services.batcher import ImageBatcher, Place
from services.container import Services, build_services
from services.images import ImageJobHandle, JobSnapshot
from tests.services.conftest import tiny_settings

WAIT_S = 60  # a deadline against hanging, never a speed assertion


class GatedBackend:
    """Records each batch; the first call waits for `gate`, so that later jobs queue up behind it."""

    name = "gated"
    model_name = "gated-sd"
    revision = ""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.calls: list[list[tuple[str, list[int]]]] = []
        self.started = threading.Event()

    def generate_batch(self, items: list[BatchItem]) -> list[list[GeneratedImage] | None]:
        self.calls.append([(item.req.prompt, list(item.seeds)) for item in items])
        self.started.set()
        assert self.gate.wait(WAIT_S)
        return [[GeneratedImage(Image.new("RGB", (8, 8)), seed) for seed in item.seeds] for item in items]


def submit(batcher: ImageBatcher, backend: Any, user: str, req: ImageRequest, seeds: list[int],
           results: dict[str, Any]) -> threading.Thread:
    def run() -> None:
        try:
            results[user + req.prompt] = [g.seed for g in batcher.run(backend, user, req, seeds, lambda u: None,
                                                                       threading.Event())]
        except JobCancelled:
            results[user + req.prompt] = "cancelled"

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def queue_behind_a_running_batch(max_images: int, jobs: list[tuple[str, ImageRequest, list[int]]]
                                 ) -> tuple[GatedBackend, list[list[tuple[str, list[int]]]], dict[str, Any]]:
    """Start a blocking job, queue `jobs` behind it (in this order), then let everything run."""
    backend = GatedBackend()
    batcher = ImageBatcher(max_images)
    results: dict[str, Any] = {}
    threads = [submit(batcher, backend, "z", ImageRequest(prompt="blocker", width=64, height=64), [0], results)]
    assert backend.started.wait(WAIT_S)
    for user, req, seeds in jobs:
        threads.append(submit(batcher, backend, user, req, seeds, results))
        while batcher.pending_images() < sum(len(s) for _, _, s in jobs[:len(threads) - 1]):
            threading.Event().wait(0.01)
    backend.gate.set()
    for thread in threads:
        thread.join(WAIT_S)
        assert not thread.is_alive()
    return backend, backend.calls[1:], results


SHAPE = ImageRequest(prompt="p", width=64, height=64, steps=4)


def test_batches_take_users_in_turn_so_one_big_job_does_not_starve_the_others() -> None:
    eight = SHAPE.model_copy(update={"prompt": "a", "batch_count": 8})
    jobs = [("a", eight, list(range(10, 18)))] + [(u, SHAPE.model_copy(update={"prompt": u}), [1]) for u in "bcd"]
    _, batches, results = queue_behind_a_running_batch(4, jobs)
    assert batches == [[("a", [10]), ("b", [1]), ("c", [1]), ("d", [1])], [("a", [11, 12, 13, 14])],
                       [("a", [15, 16, 17])]]
    assert results["aa"] == list(range(10, 18))  # the split job still gets all its images, in seed order


def test_unbatched_jobs_also_take_users_in_turn() -> None:
    eight = SHAPE.model_copy(update={"prompt": "a", "batch_count": 3})
    jobs = [("a", eight, [10, 11, 12])] + [(u, SHAPE.model_copy(update={"prompt": u}), [1]) for u in "bc"]
    _, batches, _ = queue_behind_a_running_batch(1, jobs)
    assert [[prompt for prompt, _ in batch] for batch in batches] == [["a"], ["b"], ["c"], ["a"], ["a"]]


def test_incompatible_jobs_run_in_their_own_batch_right_after() -> None:
    other_size = SHAPE.model_copy(update={"prompt": "wide", "width": 128})
    other_steps = SHAPE.model_copy(update={"prompt": "long", "steps": 9})
    jobs = [("a", SHAPE.model_copy(update={"prompt": "a"}), [1]), ("b", other_size, [2]),
            ("c", other_steps, [3]), ("d", SHAPE.model_copy(update={"prompt": "d"}), [4])]
    _, batches, results = queue_behind_a_running_batch(4, jobs)
    assert batches == [[("a", [1]), ("d", [4])], [("wide", [2])], [("long", [3])]]
    assert results["bwide"] == [2]


def test_a_lone_job_runs_at_once_without_waiting_for_partners() -> None:
    backend = GatedBackend()
    backend.gate.set()
    results: dict[str, Any] = {}
    thread = submit(ImageBatcher(8), backend, "a", SHAPE, [5], results)
    thread.join(WAIT_S)  # no other job ever arrives: a batcher that waited for partners would hang here
    assert not thread.is_alive()
    assert results == {"ap": [5]}


# With the tiny model, through the service -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory, tiny_sd_dir: Path, module_database_url: str) -> Services:
    """Services that batch (the tiny profile's default is 1 image per call)."""
    return build_services(tiny_settings(tmp_path_factory.mktemp("data"), tiny_sd_dir, max_batch_images=4,
                                        database_url=module_database_url))


def start(services: Services, prompt: str, seed: int, steps: int = 4, user: str = "") -> ImageJobHandle:
    req = services.images.validate(prompt=prompt, width=64, height=64, steps=steps, seed=seed, sampler="DPM++ 2M")
    return services.images.start(req, user=user)


def wait_for(handle: ImageJobHandle, done: Any) -> JobSnapshot:
    version = -1
    for _ in range(10_000):
        snap = handle.wait(version, timeout=WAIT_S)
        version = snap.version
        if done(snap) or snap.finished:
            return snap
    raise AssertionError("the job never got there")


SEEDS = itertools.count(20, 2)  # fresh seeds per test: a repeated request would be answered from the cache


@pytest.fixture
def two_batched(services: Services) -> tuple[ImageJobHandle, ImageJobHandle, int]:
    """Two jobs that queue behind a running one, then run together as one batch (the blocker is stopped)."""
    services.images.batcher.record_batches(10)
    seed = next(SEEDS)
    blocker = start(services, "blocker", seed, steps=400, user="z")
    wait_for(blocker, lambda s: s.step >= 1)
    handles = [start(services, "a fox", seed, user="u1"), start(services, "an owl", seed + 1, user="u2")]
    while services.images.batcher.pending_images() < 2:
        threading.Event().wait(0.01)
    blocker.stop()
    assert blocker.wait_finished(WAIT_S).status == "cancelled"
    return handles[0], handles[1], seed


def snapshots(handle: ImageJobHandle, until: Any = None) -> list[JobSnapshot]:
    out: list[JobSnapshot] = []
    wait_for(handle, lambda s: out.append(s) or (until is not None and until(s)))
    return out


def alone(services: Services, prompt: str, seed: int) -> np.ndarray:
    backend = services.image_slot.ensure_loaded()
    req = ImageRequest(prompt=prompt, width=64, height=64, steps=4, sampler="DPM++ 2M")
    (image,) = backend.generate(req, [seed], lambda u: None, threading.Event())
    return np.asarray(image.image)


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_jobs_in_one_batch_keep_their_pixels_previews_and_history(services: Services, two_batched: Any) -> None:
    fox, owl, seed = two_batched
    fox_seen, owl_seen = snapshots(fox), snapshots(owl)
    # They really shared a call (in either order: which of two jobs started together reaches the batcher first
    # depends on their database round trips).
    assert [("u1", 1), ("u2", 1)] in [sorted(batch) for batch in services.images.batcher.batches]
    for seen, prompt, own_seed in ((fox_seen, "a fox", seed), (owl_seen, "an owl", seed + 1)):
        final = seen[-1]
        assert final.status == "done"
        assert [s.step for s in seen if s.preview is not None]  # its own previews while the batch ran
        assert max(s.step for s in seen) == final.total == 4
        assert np.array_equal(pixels(final.files[0]), alone(services, prompt, own_seed))
        row = services.history.get_job(final.job_id, user=None) or {}
        assert (row["status"], row["seed_used"], row["prompt"]) == ("done", own_seed, prompt)


def test_a_stop_inside_a_batch_cancels_that_job_and_spares_the_other(services: Services, two_batched: Any) -> None:
    fox, owl, seed = two_batched
    fox_seen = snapshots(fox, until=lambda s: s.step >= 1)
    fox.stop()
    stopped = fox.wait_finished(WAIT_S)
    owl_final = owl.wait_finished(WAIT_S)
    assert any(s.step >= 1 for s in fox_seen)  # it was running inside the batch when stopped
    assert stopped.status == "cancelled"
    assert (services.history.get_job(stopped.job_id, user=None) or {})["status"] == "cancelled"
    assert owl_final.status == "done"
    assert np.array_equal(pixels(owl_final.files[0]), alone(services, "an owl", seed + 1))


def test_step_updates_of_a_job_split_over_batches_count_over_the_whole_job() -> None:
    updates: list[StepUpdate] = []
    item = BatchItem(SHAPE, [3, 4], updates.append, threading.Event(), done_before=2, job_images=5)
    assert item.step_update(per_image=4, done=1) == StepUpdate(step=10, total=20, image_index=2)


def test_jobs_waiting_in_the_batcher_are_told_their_place_and_eta_until_they_start() -> None:
    backend = GatedBackend()
    batcher = ImageBatcher(1)  # one image per call: b, c and d wait behind the blocker, then behind each other
    told: dict[str, list[Place | None]] = {user: [] for user in "zbcd"}
    threads = []
    for user in "zbcd":
        req = SHAPE.model_copy(update={"prompt": user})
        threads.append(threading.Thread(target=batcher.run, daemon=True, args=(
            backend, user, req, [1], lambda u: None, threading.Event(), told[user].append)))
        threads[-1].start()
        if user == "z":
            assert backend.started.wait(WAIT_S)
        else:
            while batcher.pending_images() < "zbcd".index(user):
                threading.Event().wait(0.01)
    assert told["z"] == []  # it found the pipeline free and ran at once: never in line
    assert told["b"][-1] == Place(ahead=0, waiting=3, eta_s=None)  # nothing timed yet: no ETA
    assert told["d"] == [Place(ahead=2, waiting=3, eta_s=None)]
    backend.gate.set()
    for thread in threads:
        thread.join(WAIT_S)
        assert not thread.is_alive()
    for user in "bcd":
        places = [p for p in told[user] if p is not None]
        assert told[user][-1] is None  # told once its first batch started
        aheads = [p.ahead for p in places]
        assert aheads == sorted(aheads, reverse=True)
        assert aheads[-1] == 0
    # Once a batch was timed, a waiting job hears an estimate: one batch ahead (the running one), then two.
    later = [p for p in told["d"] if p is not None and p.eta_s is not None]
    assert later
    assert later[0].ahead == 1
    assert later[-1].eta_s is not None
    assert later[-1].eta_s >= 0
    assert told["c"][told["c"].index(None) - 1].ahead == 0


def test_a_job_that_stops_while_in_line_moves_those_behind_it_up() -> None:
    backend = GatedBackend()
    batcher = ImageBatcher(1)
    told: dict[str, list[Place | None]] = {user: [] for user in "zbc"}
    stops = {user: threading.Event() for user in "zbc"}
    outcome: dict[str, Any] = {}

    def run(user: str) -> None:
        try:
            batcher.run(backend, user, SHAPE.model_copy(update={"prompt": user}), [1], lambda u: None, stops[user],
                        told[user].append)
            outcome[user] = "done"
        except JobCancelled:
            outcome[user] = "cancelled"

    threads = {user: threading.Thread(target=run, args=(user,), daemon=True) for user in "zbc"}
    for index, user in enumerate("zbc"):
        threads[user].start()
        if user == "z":
            assert backend.started.wait(WAIT_S)
        else:
            while batcher.pending_images() < index:
                threading.Event().wait(0.01)
    assert told["c"][-1] == Place(ahead=1, waiting=2, eta_s=None)
    stops["b"].set()
    threads["b"].join(WAIT_S)
    assert outcome["b"] == "cancelled"
    assert told["c"][-1] == Place(ahead=0, waiting=1, eta_s=None)
    backend.gate.set()
    threads["c"].join(WAIT_S)
    assert outcome["c"] == "done"
    assert told["c"][-1] is None
