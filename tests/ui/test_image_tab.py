"""Which snapshots of an image job the Image tab streams, and which outputs each message carries."""

from __future__ import annotations

import gradio as gr
from PIL import Image

from services.images import JobSnapshot
from ui.image_form import StreamGate


def job_snapshots(steps: int) -> list[JobSnapshot]:
    """A job as its watcher sees it: waiting, loading, one running snapshot per step (a new preview each), done."""
    snaps = [JobSnapshot(version=1, status="waiting", message="waiting"),
             JobSnapshot(version=2, status="loading", message="loading")]
    for step in range(1, steps + 1):
        snaps.append(JobSnapshot(version=2 + step, status="running", message=f"step {step}", step=step,
                                 total=steps, preview=Image.new("RGB", (8, 8), (step, 0, 0)),
                                 info={"job_id": 1}))
    snaps.append(JobSnapshot(version=3 + steps, status="done", message="done", step=steps, total=steps,
                             preview=snaps[-1].preview, info={"job_id": 1, "files": ["a.png"]}))
    return snaps


def streamed(gate: StreamGate, snaps: list[JobSnapshot]) -> list[JobSnapshot]:
    return [snap for snap in snaps if gate.due(snap)]


def test_steps_faster_than_the_interval_are_coalesced_but_status_changes_and_the_end_always_go() -> None:
    snaps = job_snapshots(8)
    sent = streamed(StreamGate(interval_s=3600), snaps)
    # waiting, loading, the first step, done: the 7 other steps wait for the next message.
    assert [s.status for s in sent] == ["waiting", "loading", "running", "done"]
    assert sent[-1] is snaps[-1]


def test_with_no_interval_every_step_is_streamed() -> None:
    snaps = job_snapshots(8)
    assert streamed(StreamGate(interval_s=0), snaps) == snaps


def test_a_message_carries_only_outputs_that_changed() -> None:
    gate = StreamGate(interval_s=0)
    first, second = job_snapshots(2)[2:4]
    assert gate.changed("preview", None) == gr.skip()  # no preview yet: the last job's stays on screen
    assert gate.changed("preview", first.preview) is first.preview
    assert gate.changed("info", first.info) is first.info
    assert gate.changed("preview", first.preview) == gr.skip()
    assert gate.changed("info", first.info) == gr.skip()
    assert gate.changed("preview", second.preview) is second.preview
