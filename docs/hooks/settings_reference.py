"""MkDocs hook: the settings reference page is rendered from settings.py's `Settings` class (name, variable, flag,
type, default, description), so the documentation cannot drift from the code."""

from __future__ import annotations

import enum
import sys
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic.fields import FieldInfo

ROOT = Path(__file__).resolve().parents[2]
# mkdocs loads a hook by path and restores sys.path after: settings.py and app.py (at the repo root) are imported
# now, while the root is on the path.
sys.path.insert(0, str(ROOT))
try:
    from app import build_parser
    from settings import Settings
finally:
    sys.path.remove(str(ROOT))

MARKER = "<!-- settings-reference -->"
PAGE = "reference/settings.md"

# Sections of the reference, each starting at the first field of the matching block of settings.py; a new field
# lands in the section its block belongs to.
SECTIONS: dict[str, str] = {
    "profile": "Server, data and database",
    "image_backend": "Images",
    "text_backend": "Text",
    "idle_policy": "One GPU, two models",
    "insecure_no_auth": "Accounts, limits and cache",
    "a1111_url": "Remote backends",
    "storage_url": "Image storage",
    "warmup": "Serving and replicas",
}


def cli_flags() -> dict[str, str]:
    """Setting name → its command-line flag(s), from app.py's own parser."""
    import argparse

    return {action.dest: " / ".join(f"`{flag}`" for flag in action.option_strings)
            for action in build_parser()._actions if not isinstance(action, argparse._HelpAction)}


def _bounds(field: FieldInfo) -> str:
    words = []
    for rule in field.metadata:
        for attr, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            if getattr(rule, attr, None) is not None:
                words.append(f"{sign} {getattr(rule, attr)}")
        if getattr(rule, "max_length", None) is not None:
            words.append(f"at most {rule.max_length} characters")
    return ", ".join(words)


def type_name(annotation: Any) -> str:
    """A reader's name for a field's type: the choices of an enum or Literal, 'JSON list', 'or unset'…"""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        named = [type_name(arg) for arg in typing.get_args(annotation) if arg is not type(None)]
        return " or ".join(named) + ", or unset"
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{value}`" for value in typing.get_args(annotation))
    if origin is list:
        return "JSON list of strings"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "one of " + ", ".join(f"`{member.value}`" for member in annotation)
    names = {bool: "boolean", int: "integer", float: "number", str: "string", Path: "path", SecretStr: "secret"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def default_text(field: FieldInfo) -> str:
    """The default as one would write it in .env (unset, empty, true/false, the value)."""
    if field.default_factory is not None:
        return f"`{field.default_factory()!r}`".replace("'", '"')
    value = getattr(field.default, "value", field.default)
    if value is None:
        return "unset"
    if value == "":
        return "empty"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, Path):
        return f"`./{value}`" if not value.is_absolute() else f"`{value}`"
    return f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render() -> str:
    """The reference: one table per section, one row per setting."""
    flags = cli_flags()
    out: list[str] = []
    for name, field in Settings.model_fields.items():
        if name in SECTIONS:
            out += ["", f"## {SECTIONS[name]}", "", "| setting | type | default | meaning |", "|---|---|---|---|"]
        where = f"`ATELIER_{name.upper()}`" + (f"<br>{flags[name]}" if name in flags else "")
        kind = type_name(field.annotation)
        if bounds := _bounds(field):
            kind += f" ({bounds})"
        out.append(f"| {where} | {_cell(kind)} | {_cell(default_text(field))} | {_cell(field.description or '')} |")
    return "\n".join(out) + "\n"


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """Put the generated tables where the settings page has its marker."""
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"{PAGE} lost its {MARKER} line: the settings reference would be empty")
    return markdown.replace(MARKER, render())
