"""The History tab's table: a failed job says why."""

from __future__ import annotations

from typing import Any

from ui.history_search import HistorySearch
from ui.history_tab import COLUMNS


def _rows(jobs: list[dict[str, Any]]) -> list[list[Any]]:
    """The table rows the tab shows (ui/history_search.py builds them; no files here, so no services needed)."""
    return HistorySearch(None).shown(jobs)[1]  # type: ignore[arg-type]


def job(**overrides: Any) -> dict[str, Any]:
    return {"job_id": 7, "created_at": "2026-12-06T07:00:00.123", "status": "done", "prompt": "a fox", "width": 64,
            "height": 64, "steps": 2, "sampler": "Euler", "seed_used": 5, "duration_s": 0.4, "error": None, "files": [],
            **overrides}


def test_a_failed_job_shows_its_reason_in_the_status_column() -> None:
    status = COLUMNS.index("status")
    assert _rows([job()])[0][status] == "done"
    failed = job(status="failed", error="interrupted: the server stopped while this job ran", seed_used=None)
    assert _rows([failed])[0][status] == "failed: interrupted: the server stopped while this job ran"
    long = _rows([job(status="failed", error="x" * 500)])[0][status]
    assert len(long) == len("failed: ") + 160
    assert long.endswith("…")
