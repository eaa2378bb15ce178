"""How messages name what a user sent and where the server keeps things: bounded excerpts, no absolute paths.

Messages go back to whoever sent the request (the UI, gradio_client, the React client) and into logs and history.
A name the user sent is shown as a short quoted excerpt (contracts.excerpt: an attacker's megabyte of text is not
echoed back, and control characters are written as escapes); a server folder is shown relative to the data dir
(``<data>/vae``), since its absolute path tells a stranger about the machine. Messages stay plain text: the Gradio UI
escapes them as a whole where they become HTML (ui/common.py).
"""

from __future__ import annotations

import re
from pathlib import Path

from contracts import excerpt


def data_folder(folder: Path | str | None) -> str:
    """A folder under the data dir as messages name it: ``<data>/vae``, never the absolute path."""
    return f"<data>/{Path(folder).name}" if folder else "<data>"


def excerpts(values: list[str], most: int = 3) -> str:
    """The first `most` values as excerpts, then how many more there are: 'a', 'b', 'c' and 5 more."""
    shown = ", ".join(excerpt(v) for v in values[:most])
    return shown + (f" and {len(values) - most} more" if len(values) > most else "")


# An absolute path: a slash not inside a word, a URL or a relative path, then at least two parts.
_ABSOLUTE = re.compile(r"(?<![\w.~:/\\-])/[^\s/'\"()<>,;:|]+(?:/[^\s/'\"()<>,;:|]+)+")


def hide_paths(text: str) -> str:
    """`text` (an exception's, say) with each absolute path that lies on this machine shortened to its last part
    ('…/model_index.json'); a path that names nothing here (an example, a URL route) stays as written."""

    def shorten(match: re.Match[str]) -> str:
        path = Path(match.group(0).rstrip("."))
        tail = match.group(0)[len(str(path)):]
        on_this_machine = any(p.exists() for p in (path, *path.parents) if p != Path(p.anchor))
        return f"…/{path.name}{tail}" if on_this_machine else match.group(0)

    return _ABSOLUTE.sub(shorten, text)
