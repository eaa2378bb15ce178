"""Atelier's entry point: `python app.py [flags]` serves the app (api/server.py builds it); `python app.py users …` and
`python app.py db …` manage accounts and the database."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from settings import Profile, Settings


def parse_args(argv: list[str] | None = None) -> dict[str, Any]:
    """CLI flags as Settings overrides; anything not given falls back to ATELIER_* and .env."""
    parser = argparse.ArgumentParser(prog="atelier", description="Atelier: Stable Diffusion and DeepSeek-R1 studio")
    parser.add_argument("--profile", choices=[p.value for p in Profile])
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--data-dir")
    parser.add_argument("--share", action="store_true", default=None, help="create a public Gradio share link")
    parser.add_argument("--image-model", help="hub id or local diffusers folder")
    parser.add_argument("--memory-mode", choices=["none", "model-offload", "sequential-offload"])
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile the UNet and VAE decoder (warmed up at load; off by default)")
    parser.add_argument("--text-model", help="hub id or local transformers folder (GPTQ checkpoints included)")
    parser.add_argument("--idle-policy", choices=["resident", "offload", "unload"],
                        help="what happens to a model idle for --keep-alive seconds")
    parser.add_argument("--keep-alive", dest="keep_alive_s", type=float, help="seconds before --idle-policy applies")
    parser.add_argument("--no-warmup", dest="warmup", action="store_false", default=None,
                        help="load models on the first request instead of at start")
    parser.add_argument("--insecure-no-auth", action="store_true", default=None,
                        help="serve a network host or a share link without accounts (not recommended)")
    args = vars(parser.parse_args(argv))
    return {key: value for key, value in args.items() if value is not None}


def main(argv: list[str] | None = None) -> None:
    """Parse flags and serve the app (or manage accounts with `users`, the database with `db`)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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
