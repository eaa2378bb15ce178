"""Messages name what a user sent as short escaped excerpts and the server's folders without their absolute paths."""

from __future__ import annotations

from pathlib import Path

from contracts import EXCERPT_CHARS, excerpt
from pipelines.messages import data_folder, excerpts, hide_paths


def test_an_excerpt_is_quoted_bounded_and_escaped() -> None:
    assert excerpt("Euler b") == "'Euler b'"
    long = excerpt("x" * 10_000)
    assert len(long) == EXCERPT_CHARS + 2
    assert long.endswith("…'")
    assert excerpt("a\nb\x1b[31m\u202eevil") == "'a\\nb\\x1b[31m\\u202eevil'"  # newlines, ANSI, bidi override
    assert excerpts([f"n{i}" for i in range(10)]) == "'n0', 'n1', 'n2' and 7 more"


def test_a_data_folder_is_named_without_its_absolute_path(tmp_path: Path) -> None:
    assert data_folder(tmp_path / "data" / "vae") == "<data>/vae"
    assert str(tmp_path) not in data_folder(tmp_path / "loras")


def test_absolute_paths_on_this_machine_are_shortened_and_others_kept(tmp_path: Path) -> None:
    model = tmp_path / "models" / "broken"
    model.mkdir(parents=True)
    said = (f"Error no file named model_index.json found in directory {model}. "
            f"[Errno 2] No such file or directory: '{model}/unet/config.json' ({tmp_path}/gone.png)")
    shown = hide_paths(said)
    assert str(tmp_path) not in shown
    assert shown == ("Error no file named model_index.json found in directory …/broken. "
                     "[Errno 2] No such file or directory: '…/config.json' (…/gone.png)")
    # Not paths of this machine: an example in a hint, a route, a URL, a relative path.
    kept = ("pass --image-model /path/to/model; see /api/health or http://127.0.0.1:7860/sdapi/v1/txt2img "
            "and ./data/models/x")
    assert hide_paths(kept) == kept
