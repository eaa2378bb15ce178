"""AUTOMATIC1111 sampler names mapped onto diffusers schedulers."""

from __future__ import annotations

from typing import Any

from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    LMSDiscreteScheduler,
    UniPCMultistepScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from contracts import SAMPLERS

_MAP: dict[str, tuple[type[SchedulerMixin], dict[str, Any]]] = {
    "Euler a": (EulerAncestralDiscreteScheduler, {}),
    "Euler": (EulerDiscreteScheduler, {}),
    "DPM++ 2M": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "DPM++ 2M Karras": (
        DPMSolverMultistepScheduler,
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "DDIM": (DDIMScheduler, {}),
    "LMS": (LMSDiscreteScheduler, {}),
    "Heun": (HeunDiscreteScheduler, {}),
    "UniPC": (UniPCMultistepScheduler, {}),
}
assert set(_MAP) == set(SAMPLERS), "every advertised sampler needs a scheduler"


def make_scheduler(sampler: str, base_config: Any) -> SchedulerMixin:
    """Build the scheduler for an A1111 sampler name from the model's own scheduler config."""
    cls, overrides = _MAP[sampler]
    return cls.from_config(base_config, **overrides)
