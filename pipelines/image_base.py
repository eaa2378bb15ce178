"""The image-backend interface (what every image backend offers, and what a batched call passes and returns) and the
backend registry. The request a backend runs and its checks are contracts.py's."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from PIL.Image import Image

from contracts import ImageRequest
from pipelines.registry import ModelBackend, Registry


class JobCancelled(Exception):
    """Raised inside a backend when the job's stop signal is set."""


@dataclass
class StepUpdate:
    """Progress of a running job: step counts over the whole batch, and maybe a preview."""

    step: int
    total: int
    image_index: int
    preview: Image | None = None


ProgressFn = Callable[[StepUpdate], None]


@dataclass
class GeneratedImage:
    """One finished image and the seed that made it."""

    image: Image
    seed: int


@dataclass
class BatchItem:
    """One job's share of a batched pipeline call: its seeds to run now, its progress and its own Stop."""

    req: ImageRequest
    seeds: list[int]
    on_step: ProgressFn
    stop: threading.Event
    done_before: int = 0  # images of this job finished by earlier calls, so progress counts over the whole job
    job_images: int = 0  # images in the whole job; 0: just these seeds

    def step_update(self, per_image: int, done: int, preview: Image | None = None) -> StepUpdate:
        """Progress over the whole job when each of this item's images has finished `done` of `per_image` steps."""
        total_images = self.job_images or len(self.seeds)
        return StepUpdate(step=per_image * self.done_before + done * len(self.seeds), total=per_image * total_images,
                          image_index=self.done_before, preview=preview)


# What a batched call gives back per item: its images, or None when that item was stopped.
BatchOutcome = list[GeneratedImage] | None


def generate_one_by_one(backend: ImageBackend, items: list[BatchItem]) -> list[BatchOutcome]:
    """Run batch members one after another (backends that cannot share a call, such as a remote server)."""
    outcomes: list[BatchOutcome] = []
    for item in items:
        def on_step(update: StepUpdate, item: BatchItem = item) -> None:
            # generate() counts over this item's seeds; shift that onto the whole job.
            per_image = update.total // max(1, len(item.seeds))
            item.on_step(StepUpdate(step=per_image * item.done_before + update.step,
                                    total=per_image * (item.job_images or len(item.seeds)),
                                    image_index=item.done_before + update.image_index, preview=update.preview))

        try:
            outcomes.append(backend.generate(item.req, item.seeds, on_step, item.stop))
        except JobCancelled:
            outcomes.append(None)
    return outcomes


class ImageBackend(ModelBackend, Protocol):
    """What every image backend offers besides loading: jobs one at a time, or several of one shape in one call."""

    @property
    def model_hash(self) -> str:
        """A1111's "Model hash" of the checkpoint that ran (for the PNG's parameters), or '' where there is none."""
        ...

    def generate(
        self, req: ImageRequest, seeds: list[int], on_step: ProgressFn, stop: threading.Event
    ) -> list[GeneratedImage]:
        """Run the job; raise JobCancelled within one step once stop is set."""
        ...

    def generate_batch(self, items: list[BatchItem]) -> list[BatchOutcome]:
        """Run jobs of one compute shape together, one outcome per item; a stopped item gives None. A backend that
        cannot share a call runs them one after another (generate_one_by_one)."""
        ...


IMAGE_BACKENDS: Registry[ImageBackend] = Registry("image", ("pipelines.diffusers_backend", "pipelines.a1111_backend"))
register_image_backend = IMAGE_BACKENDS.register
create_image_backend = IMAGE_BACKENDS.create
image_backend_names = IMAGE_BACKENDS.names
