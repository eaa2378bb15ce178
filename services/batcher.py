"""Micro-batching: image jobs that wait at the same time and share a compute shape run as one pipeline call.

There is no dispatcher thread and no gathering window. Each job's own worker thread queues its images and
waits; whichever waiting thread finds the pipeline free picks the next batch (users in turn, then every
compatible image up to the limit), runs it, and hands each job its images. A job that arrives while the pipeline
is idle therefore runs at once, alone; partners only come from jobs that queued while a batch was running.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from contracts import ImageRequest
from pipelines.image_base import (
    BatchItem,
    BatchOutcome,
    GeneratedImage,
    ImageBackend,
    JobCancelled,
    ProgressFn,
)
from services import metrics
from services.jobs import JobMeter

# How often a waiting job looks at its Stop while another batch runs.
STOP_POLL_S = 0.05
# Weight of the newest batch in the running estimate of a batch's duration (the ETA of waiting jobs).
BATCH_TIME_WEIGHT = 0.3


@dataclass(frozen=True)
class Place:
    """A waiting job's place in the batcher's line: jobs ahead of it, jobs waiting in all (itself included), and
    the estimated seconds until its first batch starts (None until a batch has been timed)."""

    ahead: int
    waiting: int
    eta_s: float | None


PlaceFn = Callable[[Place | None], None]  # told each new place of a waiting job; None once its first batch starts


def _no_place(place: Place | None) -> None:
    return None


def compute_shape(backend: ImageBackend, req: ImageRequest) -> Hashable:
    """What must match for jobs to share a call: the loaded model and everything that changes the graph or the
    schedule (size, steps, sampler, CFG), and for img2img, inpaint and hires fix their settings and input images;
    prompts, negative prompts and seeds may differ per image."""
    return (id(backend), backend.model_name, backend.revision, req.width, req.height, req.steps,
            req.sampler, req.cfg_scale, req.mode_shape())


@dataclass(eq=False)
class _Job:
    backend: ImageBackend
    user: str
    req: ImageRequest
    seeds: list[int]
    on_step: ProgressFn
    stop: threading.Event
    shape: Hashable
    arrival: int
    on_place: PlaceFn = _no_place
    meter: JobMeter | None = None  # told when its first batch starts, and its share of each batch's time
    told: tuple[int, int] | None = None  # the (ahead, waiting) last told, None while not told to wait
    queued: int = 0  # seeds handed to batches so far
    running: int = 0  # of those, seeds in the batch now running
    results: list[GeneratedImage] = field(default_factory=list)
    cancelled: bool = False
    error: BaseException | None = None

    @property
    def finished(self) -> bool:
        return self.cancelled or self.error is not None or len(self.results) == len(self.seeds)


class ImageBatcher:
    """Queue of waiting image jobs; runs them in batches of one shape, users taking turns."""

    def __init__(self, max_images: int) -> None:
        self.max_images = max(1, max_images)
        self._cond = threading.Condition()
        self._waiting: list[_Job] = []  # jobs with seeds not yet handed to a batch, in arrival order
        self._busy = False
        self._arrivals = itertools.count()
        self._turns = itertools.count()
        self._last_turn: dict[str, int] = {}  # user → when their images last rode in a batch
        self.batches: list[list[tuple[str, int]]] = []  # (user, images) per batch, newest last; for tests and bench
        self._keep_batches = 0
        self._batch_s: float | None = None  # running estimate of one batch's duration, for the ETA

    def pending_images(self) -> int:
        """Images queued and not yet in a batch."""
        with self._cond:
            return sum(len(job.seeds) - job.queued for job in self._waiting)

    def jobs_in_line(self) -> int:
        """Jobs waiting for their first batch."""
        with self._cond:
            return sum(1 for job in self._waiting if job.queued == 0 and not job.running)

    def record_batches(self, keep: int) -> None:
        """Remember the makeup of the last `keep` batches (0: none), for tests and benchmarks."""
        with self._cond:
            self._keep_batches = keep
            self.batches.clear()

    def run(self, backend: ImageBackend, user: str, req: ImageRequest, seeds: list[int], on_step: ProgressFn,
            stop: threading.Event, on_place: PlaceFn = _no_place, meter: JobMeter | None = None
            ) -> list[GeneratedImage]:
        """Queue the job, take part in running batches until its images are made; raise JobCancelled on Stop.
        While it waits for its first batch, `on_place` hears its place in line each time the place changes; `meter`
        hears when its first batch starts and its share of each batch's time."""
        job = _Job(backend, user, req, list(seeds), on_step, stop, compute_shape(backend, req), next(self._arrivals),
                   on_place, meter)
        with self._cond:
            self._waiting.append(job)
            self._tell_places()
        while True:
            with self._cond:
                # The thread of the job whose turn it is runs the next batch, so the batch a thread runs always
                # holds its own job and a Stop is never stuck behind another user's batch.
                while (self._busy or self._lead() is not job) and not job.finished \
                        and not self._withdraw_if_stopped(job):
                    self._cond.wait(STOP_POLL_S)
                if job.finished or self._withdraw_if_stopped(job):
                    break
                batch = self._pick()
                self._busy = True
            started = time.monotonic()
            try:
                self._run_batch(batch)
            finally:
                with self._cond:
                    self._busy = False
                    took = time.monotonic() - started
                    self._batch_s = took if self._batch_s is None else \
                        BATCH_TIME_WEIGHT * took + (1 - BATCH_TIME_WEIGHT) * self._batch_s
                    self._tell_places()
                    self._cond.notify_all()
        if job.error is not None:
            raise job.error
        if job.cancelled:
            raise JobCancelled()
        return job.results

    def _withdraw_if_stopped(self, job: _Job) -> bool:
        """A stopped job with no images in the running batch leaves the queue at once (lock held)."""
        if job.finished:
            return False
        if job.stop.is_set() and not job.running:
            job.cancelled = True
            self._drop(job)
            self._tell_places()
            self._cond.notify_all()  # the next job in turn may now lead
            return True
        return False

    def _tell_places(self) -> None:
        """Tell each job still waiting for its first batch its place, when it changed (lock held). A job that is
        about to run (the pipeline is free and it leads) is not told to wait: a lone job hears nothing. Jobs that
        started have their images counted ahead of the others while they have some left to hand to a batch."""
        line = sorted(self._waiting, key=self._turn)
        images_ahead = 0
        for ahead, job in enumerate(line):
            waits = job.queued == 0 and not job.running and (self._busy or ahead > 0)
            if waits:
                place = (ahead, len(line))
                if place != job.told:
                    job.told = place
                    # Batches ahead of its first one (the images ahead of it, a full batch at a time), plus the
                    # remainder of the running one: an estimate, as Gradio's own queue ETA is.
                    batches = math.ceil(images_ahead / self.max_images) + (1 if self._busy else 0)
                    eta = None if self._batch_s is None else round(batches * self._batch_s, 1)
                    job.on_place(Place(ahead, len(line), eta))
            images_ahead += len(job.seeds) - job.queued

    def _turn(self, job: _Job) -> tuple[int, int]:
        """Sort key: users least recently served first, then the order jobs arrived in."""
        return self._last_turn.get(job.user, -1), job.arrival

    def _lead(self) -> _Job | None:
        return min(self._waiting, key=self._turn, default=None)

    def _pick(self) -> list[tuple[_Job, int]]:
        """The next batch (lock held): the user whose turn it is leads; compatible images follow, users in turn,
        one image each per round, up to max_images."""
        lead = min(self._waiting, key=self._turn)
        by_user: dict[str, list[_Job]] = {}
        for job in sorted((j for j in self._waiting if j.shape == lead.shape), key=self._turn):
            by_user.setdefault(job.user, []).append(job)
        taken: dict[_Job, int] = {}
        room = self.max_images
        while room and by_user:
            for user in list(by_user):
                jobs = by_user[user]
                job = jobs[0]
                taken[job] = taken.get(job, 0) + 1
                room -= 1
                if job.queued + taken[job] == len(job.seeds):
                    jobs.pop(0)
                    if not jobs:
                        del by_user[user]
                if not room:
                    break
        order: list[str] = []
        for job, count in taken.items():
            job.running = count
            if job.user not in order:
                order.append(job.user)
        for user in order:  # in the order they rode, so that ties next time go to whoever rode first
            self._last_turn[user] = next(self._turns)
        if self._keep_batches:
            self.batches = [*self.batches, [(job.user, count) for job, count in taken.items()]][-self._keep_batches:]
        return list(taken.items())

    def _run_batch(self, batch: list[tuple[_Job, int]]) -> None:
        """Run one batch outside the lock and give each job its share (its images, its cancellation, the error)."""
        items = []
        with self._cond:
            for job, count in batch:
                start = job.queued
                job.queued += count
                if job.queued == len(job.seeds):
                    self._waiting.remove(job)
                items.append(BatchItem(job.req, job.seeds[start:job.queued], job.on_step, job.stop,
                                       done_before=start, job_images=len(job.seeds)))
                if job.told is not None:
                    job.told = None
                    job.on_place(None)  # its first batch starts: no longer in line
            self._tell_places()
        backend = batch[0][0].backend
        started = time.perf_counter()
        for job, _ in batch:
            if job.meter is not None:
                job.meter.running()
        try:
            outcomes: list[BatchOutcome] = backend.generate_batch(items)
        except JobCancelled:
            outcomes = [None] * len(items)
        except Exception as err:  # the whole call failed: every job in it fails with the same reason
            with self._cond:
                for job, _ in batch:
                    job.error, job.running = err, 0
                    self._drop(job)
            return
        finally:
            _measure(batch, time.perf_counter() - started)
        with self._cond:
            for (job, _), outcome in zip(batch, outcomes, strict=True):
                job.running = 0
                if outcome is None:
                    job.cancelled = True
                    self._drop(job)
                else:
                    job.results.extend(outcome)

    def _drop(self, job: _Job) -> None:
        if job in self._waiting:
            self._waiting.remove(job)


def _measure(batch: list[tuple[_Job, int]], took: float) -> None:
    """The batch's size for the metrics, and each job's share of its time (by images) for the request log."""
    images = sum(count for _, count in batch)
    metrics.batch_ran("image", images)
    for job, count in batch:
        if job.meter is not None:
            job.meter.device_s += took * count / images
