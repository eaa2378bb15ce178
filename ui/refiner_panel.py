"""The "Refiner" accordion of the txt2img and img2img tabs, as AUTOMATIC1111 has it: a second (SDXL) checkpoint
and the fraction of the steps after which it takes over (pipelines/refiner.py runs it)."""

from __future__ import annotations

import gradio as gr

from contracts import DEFAULT_REFINER_SWITCH_AT
from services.container import Services

NAMES = ("refiner_checkpoint", "refiner_switch_at")


def refiner_choices(checkpoints: list[str]) -> list[tuple[str, str]]:
    """The checkpoints as refiner choices; the empty name means none."""
    return [("None", ""), *((name, name) for name in checkpoints)]


def render(services: Services, prefix: str) -> dict[str, gr.components.Component]:
    """The accordion, closed, with the refiner off (the form's "Refresh list" lists its choices again:
    image_form.wire_relist)."""
    with gr.Accordion("Refiner", open=False, elem_id=f"{prefix}-refiner"), gr.Row():
        checkpoint = gr.Dropdown(refiner_choices(services.catalog.models()), value="",
                                 label="Refiner checkpoint (SDXL)", elem_id=f"{prefix}-refiner-checkpoint", scale=3)
        switch_at = gr.Slider(0.01, 0.99, value=DEFAULT_REFINER_SWITCH_AT, step=0.01, label="Switch at",
                              info="the fraction of the steps after which the refiner takes over",
                              elem_id=f"{prefix}-refiner-switch-at", scale=2)
    return {"refiner_checkpoint": checkpoint, "refiner_switch_at": switch_at}
