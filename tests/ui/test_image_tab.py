"""Which snapshots of an image job the Image tab streams, and which outputs each message carries."""

from __future__ import annotations

import dataclasses

import gradio as gr
import pytest
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


def test_updates_faster_than_the_interval_are_coalesced_but_the_first_and_the_end_always_go() -> None:
    snaps = job_snapshots(8)
    sent = streamed(StreamGate(interval_s=3600), snaps)
    # waiting, then done: loading and the steps wait for the next message (a quick job: two messages).
    assert [s.status for s in sent] == ["waiting", "done"]
    assert sent[-1] is snaps[-1]


def test_a_held_back_snapshot_goes_when_it_comes_again_after_the_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    import ui.image_form

    now = [0.0]
    monkeypatch.setattr(ui.image_form.time, "monotonic", lambda: now[0])
    gate = StreamGate(interval_s=0.25)
    waiting, loading = job_snapshots(1)[:2]
    assert gate.due(waiting)
    now[0] = 0.01
    assert not gate.due(loading)  # held back: a message went out 10 ms ago
    now[0] = 0.3
    assert gate.due(loading)  # the watcher repeats it after a quiet spell: now it goes
    now[0] = 0.6
    assert not gate.due(loading)  # sent already: a repeat is not a message
    in_line = dataclasses.replace(loading, version=loading.version + 1, place=2, waiting=3)
    now[0] = 0.61
    assert gate.due(in_line)  # a new place in line goes at once


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
