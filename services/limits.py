"""What a request may hold, as the UI needs it: the error for a bad request, the seed range, the sampler names.

They live in pipelines/ (the backends check them too); this module hands them on so that ui/ never imports pipelines/.
"""

from __future__ import annotations

from pipelines.image_base import MAX_SEED, SAMPLERS, InvalidRequest

__all__ = ["MAX_SEED", "SAMPLERS", "InvalidRequest"]
