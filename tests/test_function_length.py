"""The house rule on short functions holds: no function or method of the app (outside tests/ and bench/) runs over
60 lines, from its `def` to its last line. A longer one is split into named steps, as ARCHITECTURE.md asks."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 60
SKIPPED = {"tests", "bench", "react_frontend", "node_modules", ".git", "site", ".venv"}


def long_functions(root: Path) -> list[str]:
    """`path:line name (N lines)` for each function under `root` longer than LIMIT."""
    found = []
    for path in sorted(root.rglob("*.py")):
        if SKIPPED & set(path.relative_to(root).parts):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > LIMIT:
                    found.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_function_runs_over_60_lines() -> None:
    assert long_functions(ROOT) == []


def test_the_check_sees_a_long_function(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(LIMIT))
    (tmp_path / "long.py").write_text(f"def long() -> None:\n{body}\n", encoding="utf-8")
    (tmp_path / "short.py").write_text("def short() -> None:\n    pass\n", encoding="utf-8")
    assert long_functions(tmp_path) == [f"long.py:1 long ({LIMIT + 1} lines)"]
