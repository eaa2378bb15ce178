"""Atelier's entry point: `python app.py [flags]` serves the app (api/server.py builds it); `python app.py users …` and
`python app.py db …` manage accounts and the database."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from settings import Profile, Settings

CLI_EPILOG = """\
more commands:
  python app.py users add|list|remove|passwd [NAME] [--admin]   manage accounts (python app.py users --help)
  python app.py users key create|list|revoke USER [LABEL]        API keys (python app.py users key --help)
  python app.py db migrate-sqlite-to URL                         copy a SQLite history into PostgreSQL
                                                                 (python app.py db --help)

Every flag is also an environment variable (--memory-mode: ATELIER_MEMORY_MODE) or a line of a .env file in the
working directory; a flag wins over both. Settings without a flag (ATELIER_DATABASE_URL, ATELIER_REDIS_URL,
ATELIER_STORAGE_URL, limits, remote backends, ...) are listed in the documentation's settings reference
(docs/reference/settings.md, built from settings.py).
"""


def _flag_help(name: str, default: str | None = None, text: str | None = None) -> str:
    """A flag's help from the setting's own description (one text for -h and the docs), its default and variable."""
    field = Settings.model_fields[name]
    text = (text or field.description or "").replace("`", "")
    if default is None:
        value = getattr(field.default, "value", field.default)
        default = ("on" if value else "off") if isinstance(value, bool) else str(value)
    shown = "" if "unset:" in text else f" Default: {default}."
    return f"{text}{shown} [ATELIER_{name.upper()}]"


def build_parser() -> argparse.ArgumentParser:
    """The server's flags; each maps to the Settings field of the same name (--keep-alive to keep_alive_s)."""
    parser = argparse.ArgumentParser(
        prog="python app.py", epilog=CLI_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Atelier: a self-hosted studio for Stable Diffusion images and DeepSeek-R1 text: a Gradio UI at\n"
                    "/, a React client at /app and an API. Without flags it serves http://127.0.0.1:7860.")
    add = parser.add_argument
    add("--profile", choices=[p.value for p in Profile], help=_flag_help("profile"))
    add("--host", help=_flag_help("host"))
    add("--port", type=int, help=_flag_help("port"))
    add("--data-dir", metavar="DIR", help=_flag_help("data_dir", "./data"))
    add("--share", action="store_true", default=None, help=_flag_help("share"))
    add("--image-model", metavar="MODEL", help=_flag_help("image_model"))
    add("--memory-mode", choices=["none", "model-offload", "sequential-offload"], help=_flag_help("memory_mode"))
    add("--compile", action=argparse.BooleanOptionalAction, default=None, help=_flag_help("compile"))
    add("--text-model", metavar="MODEL", help=_flag_help("text_model"))
    add("--idle-policy", choices=["resident", "offload", "unload"], help=_flag_help("idle_policy"))
    add("--keep-alive", dest="keep_alive_s", type=float, metavar="SECONDS", help=_flag_help("keep_alive_s"))
    add("--no-warmup", dest="warmup", action="store_false", default=None,
        help=_flag_help("warmup", "warm-up on", "Load models on the first request instead of in the background at "
                                                "start."))
    add("--insecure-no-auth", action="store_true", default=None, help=_flag_help("insecure_no_auth"))
    return parser


def parse_args(argv: list[str] | None = None) -> dict[str, Any]:
    """CLI flags as Settings overrides; anything not given falls back to ATELIER_* and .env."""
    args = vars(build_parser().parse_args(argv))
    return {key: value for key, value in args.items() if value is not None}


def main(argv: list[str] | None = None) -> None:
    """Parse flags and serve the app (or manage accounts with `users`, the database with `db`)."""
    from api.log_format import configure_logging

    # ATELIER_LOG_FORMAT before the settings are read: their own errors are logged in the chosen format.
    configure_logging("json" if os.environ.get("ATELIER_LOG_FORMAT", "").lower() == "json" else "text")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["users"]:
        from api.users_cli import users_main

        users_main(argv[1:])
        return
    if argv[:1] == ["db"]:
        from api.db_cli import db_main

        db_main(argv[1:])
        return
    try:
        settings = Settings(**parse_args(argv))
    except Exception as err:
        raise SystemExit(f"Invalid settings: {err}") from None
    # Imported only now: the server's modules import torch, which `users` and `db` do not need.
    from api.server import serve

    serve(settings)


if __name__ == "__main__":
    main()
