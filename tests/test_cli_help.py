"""`python app.py --help` (and `users --help`, `db --help`) tell a newcomer every flag, its default and variable, and
where the other commands and settings are."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from app import build_parser
from settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def _help(*args: str) -> str:
    done = subprocess.run([sys.executable, "app.py", *args, "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_every_flag_has_help_with_its_default_and_variable() -> None:
    flags = [a for a in build_parser()._actions if not isinstance(a, argparse._HelpAction)]
    assert {a.dest for a in flags} >= {"profile", "host", "port", "data_dir", "memory_mode", "share", "warmup",
                                      "keep_alive_s", "insecure_no_auth"}
    for action in flags:
        assert action.dest in Settings.model_fields, f"{action.option_strings} sets no setting"
        assert action.help, f"{action.option_strings} has no help"
        assert f"[ATELIER_{action.dest.upper()}]" in action.help
        assert "Default: " in action.help or "unset: " in action.help, f"{action.option_strings}: no default shown"


def test_the_help_names_defaults_the_subcommands_and_the_environment() -> None:
    text = _help()
    for flag, default in [("--profile", "auto"), ("--host", "127.0.0.1"), ("--port", "7860"),
                          ("--data-dir", "./data"), ("--memory-mode", "none"), ("--keep-alive", "300")]:
        section = text.split("options:", 1)[1].split(f"  {flag}", 1)[1].split("\n  --", 1)[0]
        assert f"Default: {default}." in " ".join(section.split()), f"{flag}: {section}"
    assert "python app.py users" in text
    assert "python app.py db migrate-sqlite-to" in text
    assert "ATELIER_" in text
    assert ".env" in text


@pytest.mark.parametrize(("command", "expected"), [
    (["users"], ["add", "passwd", "--admin", "ATELIER_DATABASE_URL", "Restart Atelier"]),
    (["db"], ["migrate-sqlite-to", "ATELIER_DATABASE_URL"]),
    (["db", "migrate-sqlite-to"], ["postgresql://", "--sqlite FILE", "ATELIER_DATA_DIR"]),
])
def test_the_subcommands_explain_themselves(command: list[str], expected: list[str]) -> None:
    text = _help(*command)
    assert text.startswith(f"usage: python app.py {' '.join(command)}")
    for word in expected:
        assert word in text


@pytest.mark.parametrize("problem", ["S3 bucket 'b' does not exist and these credentials may not create it",
                                     "another running replica of this database is named 'r1'"])
def test_a_start_up_problem_stops_the_server_with_the_reason(monkeypatch: pytest.MonkeyPatch, problem: str,
                                                             tmp_path: Path) -> None:
    import app
    from services import container
    from storage.blobs import StorageUnavailable
    from storage.db import ReplicaNameTaken

    def refuse(_: object) -> None:  # where storage is opened, as the services assemble
        raise (StorageUnavailable if "bucket" in problem else ReplicaNameTaken)(problem)

    monkeypatch.setattr(container, "_assemble", refuse)
    with pytest.raises(SystemExit, match=f"^Atelier cannot start: {problem}$"):
        app.main(["--profile", "tiny", "--port", "0", "--data-dir", str(tmp_path)])
