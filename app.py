"""Atelier's entry point: CLI flags → Settings → FastAPI app with Gradio at / and REST under /api."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from settings import Profile, Settings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from fastapi import FastAPI

log = logging.getLogger("atelier")
QUEUE_IDLE_POLL_S = 0.1


def prepare_environment(settings: Settings) -> None:
    """Environment that must be set before gradio / huggingface_hub are imported."""
    # Gradio's usage analytics phone home; Atelier makes no outside request it was not asked for.
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    settings.ensure_dirs()
    os.environ.setdefault("GRADIO_TEMP_DIR", str(settings.tmp_dir / "gradio"))
    if settings.resolved_profile is Profile.TINY:
        # The tiny profile is fully offline by contract.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the whole app: services, Gradio UI at /, REST at /api."""
    settings = settings or Settings()
    prepare_environment(settings)

    import gradio as gr
    from fastapi import FastAPI
    from slowapi import Limiter
    from slowapi.errors import RateLimitExceeded
    from starlette.routing import Mount

    from api import gradio_internals
    from api.auth import Authenticator, limits_apply
    from api.frontend import mount_frontend
    from api.gateway import Gateway
    from api.internal_routes import BodyLimits, EditorBlobRoute
    from api.rest import build_router, rate_limit_exceeded, shared_state_unavailable
    from api.sessions import HeartbeatWatch, SessionJanitor
    from services.accounts import exposure_problem
    from services.container import build_services
    from services.shared_state import TICKET_STATE_KEY, UNAVAILABLE, open_shared_state
    from ui.app_ui import THEME, build_ui

    services = build_services(settings)
    shared = open_shared_state(settings)  # process memory, or the Redis every replica shares
    has_users = services.accounts.any()
    enforce = limits_apply(settings.rate_limits, settings.host, settings.share, has_users)
    blocks = build_ui(services, enforce_quota=enforce, ledger=shared.jobs,
                      jobs=lambda b: gradio_internals.jobs_by_user(b, TICKET_STATE_KEY),
                      tell_place=gradio_internals.tell_place)
    # api_open=False: every call, UI or API, goes through the queue (limits, order, cancellation).
    blocks.queue(api_open=False, max_size=settings.queue_max_size, default_concurrency_limit=1)
    janitor = SessionJanitor(blocks, grace_s=settings.session_grace_s, temp_dir=Path(os.environ["GRADIO_TEMP_DIR"]),
                             temp_max_age_s=settings.temp_max_age_s, cache_dirs=[settings.image_cache_dir])

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if settings.warmup:
            services.warm_up()
        services.residency.start()
        services.replicas.start()
        sweeper = asyncio.create_task(janitor.run(settings.temp_sweep_every_s))
        # The quota's count of this replica's jobs, for the other replicas (nothing to do in process memory).
        ledger = asyncio.create_task(shared.jobs.run(lambda: gradio_internals.jobs_by_user(blocks, TICKET_STATE_KEY)))
        yield
        sweeper.cancel()
        ledger.cancel()
        services.shut_down()
        shared.close()

    if problem := exposure_problem(settings.host, settings.share, has_users, settings.insecure_no_auth):
        raise SystemExit(problem)
    auth = Authenticator(services.accounts, required=has_users, trusted_proxies=settings.trusted_proxies)
    storage_uri, storage_options = shared.limits_storage()
    limiter = Limiter(key_func=auth.rate_key, storage_uri=storage_uri, storage_options=storage_options,
                      enabled=enforce)
    app = FastAPI(title="Atelier", docs_url="/api/docs", openapi_url="/api/openapi.json", redoc_url=None,
                  lifespan=lifespan)
    app.state.services = services
    app.state.janitor = janitor
    app.state.limiter = limiter
    app.state.shared = shared
    app.add_exception_handler(RateLimitExceeded, rate_limit_exceeded)
    for error in UNAVAILABLE:
        app.add_exception_handler(error, shared_state_unavailable)
    app.include_router(build_router(services, auth, limiter, settings.limit_reads), prefix="/api")
    mount_frontend(app)  # before Gradio's catch-all mount at /
    # show_error=False: an unexpected exception reaches the user as a short "Error"; its traceback goes to
    # the log. Messages we raise on purpose (gr.Error) are always shown.
    gr.mount_gradio_app(app, blocks, path="/", theme=THEME, ssr_mode=False, show_error=False,
                        auth=services.accounts.verify if has_users else None,
                        auth_message="Log in with your Atelier account." if has_users else None,
                        footer_links=["api", "settings"],
                        # The browser refuses a larger file before sending it; Gradio's upload route stops reading it.
                        max_file_size=settings.upload_max_bytes,
                        # Folders Gradio may copy output files from into its cache (a mounted app does not check
                        # today; a launched one does): the images, and the local copies of S3 images.
                        allowed_paths=[str(settings.images_dir), str(settings.image_cache_dir)])
    auth.gradio_app = next(r.app for r in app.routes if isinstance(r, Mount) and r.path == "")
    gradio_internals.check(blocks, auth.gradio_app)  # before serving: refuse a Gradio without what we use
    if (tokens := shared.login_tokens()) is not None:  # a user logged in on one replica is on all of them
        gradio_internals.share_login_tokens(auth.gradio_app, tokens, shared.agree_cookie_id)
    # Gradio's queue loop wakes every 1 ms while idle; each wake takes the GIL from the thread that drives
    # the model, which made token generation several times slower (bench/text_overhead.py). A push or a freed
    # worker wakes it at once instead, so the poll is only a safety net (a 20 ms poll cost each job ~10-18 ms).
    gradio_internals.set_idle_poll(blocks, QUEUE_IDLE_POLL_S)
    gradio_internals.validate_through(blocks, auth.gradio_app)  # else each job leaves a SessionState behind
    # A session keeps what it changed, not a config of all 240 components (~370 KiB and ~60 ms a session), and an
    # output skipped with gr.skip() costs nothing (Gradio rebuilt the component and its API schema for each).
    gradio_internals.lean_sessions(blocks)
    gradio_internals.cheap_skips(blocks)
    # Inside the gateway, which has resolved the user and counted the request as an upload.
    app.add_middleware(EditorBlobRoute, blocks=blocks, uploads=services.uploads)
    app.add_middleware(HeartbeatWatch, janitor=janitor)
    # Gradio's cache and upload folders hold the only files it may serve: the data dir never is.
    app.add_middleware(Gateway, auth=auth, limiter=limiter, blocks=blocks, max_queue=settings.queue_max_size,
                       enforce=enforce, session_owner=janitor.owner,
                       file_roots=[Path(os.environ["GRADIO_TEMP_DIR"])],
                       limits={"image": settings.limit_image_jobs, "chat": settings.limit_chat_messages,
                               "upload": settings.limit_uploads, "login": settings.limit_logins,
                               "read": settings.limit_reads})
    # Outermost: unused body routes are refused and every body is capped before anything reads it.
    app.add_middleware(BodyLimits, upload_max_bytes=settings.upload_max_bytes)
    return app


CLI_EPILOG = """\
more commands:
  python app.py users add|list|remove|passwd [NAME] [--admin]   manage accounts (python app.py users --help)
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


def open_share_link(settings: Settings) -> str | None:
    """Ask Gradio's share server for a public link to the local port; print one clear line either way."""
    import secrets

    from gradio import networking

    try:
        url = networking.setup_tunnel(settings.host if settings.host != "0.0.0.0" else "127.0.0.1",  # noqa: S104
                                      settings.port, secrets.token_urlsafe(32), settings.share_server_address, None)
    except Exception as err:  # offline, blocked, or the frpc binary missing: keep serving locally
        print(f"Share link unavailable ({type(err).__name__}: {err}); Atelier keeps running locally.",
              file=sys.stderr)
        return None
    print(f"Public share link: {url}")
    return url


def main(argv: list[str] | None = None) -> None:
    """Parse flags, build the app and serve it with uvicorn (or manage accounts with `users`, the database with
    `db`)."""
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
    import uvicorn

    from storage.blobs import StorageUnavailable
    from storage.db import ReplicaNameTaken

    try:
        app = create_app(settings)
    except (StorageUnavailable, ReplicaNameTaken) as err:  # what to fix, said without a traceback
        raise SystemExit(f"Atelier cannot start: {err}") from None
    # Open SSE streams (queue listeners, heartbeats) would hold a graceful shutdown forever.
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="info",
                            timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    if settings.share:
        import threading
        import time

        def share_when_up() -> None:
            while not server.started:
                time.sleep(0.2)
            open_share_link(settings)

        threading.Thread(target=share_when_up, daemon=True).start()
    print(f"Atelier on http://{settings.host}:{settings.port} (profile {settings.resolved_profile.value})")
    server.run()


if __name__ == "__main__":
    main()
