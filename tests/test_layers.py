"""The layers hold: every module's imports (read with ast, at any depth: function-level and TYPE_CHECKING imports
count) stay within what its layer may import, and no two modules of ours import each other, even through others.

  app.py ─► api/ ─► ui/ ─► services/ ─► pipelines/, storage/ ─► contracts.py, settings.py

ui/ and api/ reach models and the database only through services/; pipelines/ knows no web and no database;
storage/ knows no model and no use case; contracts.py and settings.py import nothing of ours. ARCHITECTURE.md
explains why.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = ("app", "settings", "contracts", "api", "ui", "services", "pipelines", "storage")
# What each layer may import of ours (its own layer always), and the libraries it must not import.
MAY_IMPORT: dict[str, set[str]] = {
    "app": {"settings", "api"},
    "api": {"contracts", "settings", "services", "ui"},
    "ui": {"contracts", "settings", "services"},
    "services": {"contracts", "settings", "pipelines", "storage"},
    "pipelines": {"contracts", "settings"},
    "storage": {"contracts", "settings"},
    "contracts": set(),
    "settings": set(),
}
NEVER: dict[str, set[str]] = {
    "ui": {"torch", "peewee", "diffusers", "transformers", "redis", "boto3"},
    "api": {"torch", "peewee", "diffusers", "transformers", "redis", "boto3"},
    "pipelines": {"gradio", "fastapi", "starlette", "slowapi", "peewee", "playhouse", "redis", "boto3"},
    "storage": {"torch", "diffusers", "transformers", "gradio", "fastapi"},
    "contracts": {"torch", "gradio", "fastapi", "peewee"},
}


def layer_of(module: str) -> str:
    """The layer of a module of ours by its dotted name."""
    return module.split(".")[0]


def module_name(path: Path) -> str:
    """The dotted name of a file under ROOT."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str = "") -> set[str]:
    """Every module a source imports, at any depth; relative imports are resolved against `module`."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")[: -node.level]
                base = ".".join([*package, base] if base else package)
            found.add(base)
            # `from pipelines import tiny` imports the module pipelines.tiny
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def violations(module: str, source: str) -> list[str]:
    """What `module` (of layer layer_of(module)) imports that its layer must not."""
    layer = layer_of(module)
    allowed = MAY_IMPORT[layer] | {layer}
    bad = []
    names = imported_modules(source, module)
    # `from a.b import c` also yields a.b.c, which is only a module when a.b is a package: name the module itself.
    for name in sorted(n for n in names if n.rpartition(".")[0] not in names or n in MODULES):
        top = name.split(".")[0]
        if top in OURS and top not in allowed:
            bad.append(f"{name} ({layer} may not import {top})")
        elif top in NEVER.get(layer, ()):
            bad.append(f"{name} ({layer} never imports {top})")
    return bad


def our_files() -> Iterator[Path]:
    """The modules of every layer (tests, benchmarks, examples and the React client are no layer)."""
    for name in ("app.py", "settings.py", "contracts.py"):
        yield ROOT / name
    for package in ("api", "ui", "services", "pipelines", "storage"):
        yield from sorted((ROOT / package).rglob("*.py"))


FILES = list(our_files())
MODULES = {module_name(path) for path in FILES}


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_each_module_imports_only_what_its_layer_may(path: Path) -> None:
    module = module_name(path)
    bad = violations(module, path.read_text(encoding="utf-8"))
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}; see ARCHITECTURE.md's rules"


@pytest.mark.parametrize(("module", "line"), [
    ("ui.chat_tab", "from pipelines.text_base import TextUsage"),
    ("ui.common", "if TYPE_CHECKING:\n    from storage.models import Message"),
    ("api.rest.history", "def f():\n    from storage import db"),
    ("api.server", "import pipelines.tiny"),
    ("pipelines.image_ops", "from services.images import ImageService"),
    ("pipelines.prompts", "import gradio as gr"),
    ("storage.models", "from services import history"),
    ("storage.blobs", "import torch"),
    ("services.images", "from ui.common import user_of"),
    ("settings", "from storage.blobs import S3Location"),
    ("contracts", "from pipelines.image_base import JobCancelled"),
    ("app", "from services.container import build_services"),
])
def test_a_deliberate_bad_import_is_caught(module: str, line: str) -> None:
    assert violations(module, f"from __future__ import annotations\n{line}\n")


def test_good_imports_pass() -> None:
    assert violations("ui.chat_tab", "from contracts import InvalidRequest\nfrom services import chat") == []
    assert violations("services.images", "from storage import files\nfrom pipelines.image_base import BatchItem") == []


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of ours it imports (a package's import counts as its __init__)."""
    graph: dict[str, set[str]] = {}
    for path in FILES:
        module = module_name(path)
        graph[module] = {name for name in imported_modules(path.read_text(encoding="utf-8"), module)
                         if name in MODULES and name != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_of_ours_imports_itself_through_others() -> None:
    assert cycles(import_graph()) == []


def test_a_circle_is_caught() -> None:
    assert cycles({"storage.db": {"storage.migrations"}, "storage.migrations": {"storage.db"},
                   "storage.models": {"storage.db"}}) == [["storage.db", "storage.migrations"]]
