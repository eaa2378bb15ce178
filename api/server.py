"""The server: one FastAPI app with the REST routes under /api, the built React client at /app and Gradio (its UI and
its named API) at /, every request passing the gateway first. `create_app` runs the assembly's steps in order; each is
a function of a few lines below, so that a new dialect (OpenAI's /v1, AUTOMATIC1111's /sdapi/v1, MCP) is one more
mount beside the others, calling the same services."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from slowapi import Limiter
from starlette.requests import Request
from starlette.routing import Mount

from api import gradio_internals
from api import mcp_gate as mcp
from api.auth import Authenticator, limits_apply
from api.cross_origin import add_cors
from api.dialects import DialectContext, mount_dialects
from api.frontend import mount_frontend
from api.gateway import Dialect, Gateway
from api.internal_routes import BodyLimits, EditorBlobRoute
from api.log_format import configure_logging
from api.metrics_endpoint import is_local, metrics_endpoint
from api.ownership import FileGrants, SessionGuard
from api.request_id import RequestId
from api.request_rows import RequestRows
from api.rest import add_rest
from api.server_control import GradioControl
from api.sessions import SessionJanitor, StreamWatch
from services.accounts import exposure_problem
from services.admission import TICKET_STATE_KEY, QueueQuota
from services.container import CannotStart, Services, build_services
from services.running import Quota
from settings import Profile, Settings

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
    gradio_internals.skip_stub_writing()


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the whole app: services, Gradio UI and API at /, REST at /api, the React client at /app."""
    settings = settings or Settings()
    prepare_environment(settings)
    services = build_services(settings)
    has_users = services.accounts.any()
    if problem := exposure_problem(settings.host, settings.share, has_users, settings.insecure_no_auth):
        raise SystemExit(problem)
    enforce = limits_apply(settings.rate_limits, settings.host, settings.share, has_users)
    blocks = build_blocks(services, enforce)
    # Gradio's upload and cache folder: the only files it may serve, each to the users it handed it to.
    grants = FileGrants(os.environ["GRADIO_TEMP_DIR"])
    janitor = session_janitor(blocks, settings, services, grants)
    guard = SessionGuard(services.shared.claims, blocks, has_users)  # each session, event and upload: its first user's
    auth = Authenticator(services.accounts, required=has_users, trusted_proxies=settings.trusted_proxies,
                         keys=services.api_keys)
    limiter = rate_limiter(services, auth, enforce)
    bridge = mcp.McpBridge(has_users)  # Gradio's MCP server, its tool calls run as the caller (api/mcp_gate.py)
    app = FastAPI(title="Atelier", docs_url="/api/docs", openapi_url="/api/openapi.json", redoc_url=None,
                  lifespan=lifespan(services, blocks, janitor, bridge))
    app.state.services, app.state.janitor, app.state.auth, app.state.limiter = services, janitor, auth, limiter
    add_rest(app, settings.limit_reads, settings.limit_uploads)
    dialects = add_dialects(app, blocks, auth, enforce, has_users)
    add_metrics(app, settings, auth)
    mount_frontend(app)  # before Gradio's catch-all mount at /
    auth.gradio_app = mount_gradio(app, blocks, services, has_users)
    adopt_gradio(blocks, auth.gradio_app, services, guard)
    services.admin.control = GradioControl(blocks, auth.gradio_app, services.running)  # its queue and sessions
    bridge.gradio_app = auth.gradio_app
    mcp.install(blocks, bridge)
    add_gateway(app, blocks, janitor, auth, limiter, enforce, guard, grants, [*dialects, mcp.DIALECT], bridge)
    return app


def build_blocks(services: Services, enforce_quota: bool) -> Any:
    """The Gradio Blocks (every tab and the named API), queued: its jobs admitted by the per-user quota."""
    from ui.app_ui import build_ui  # imports gradio: only once prepare_environment has run

    # Each user's quota (an admin's override, else the setting: services/user_limits.py), over their jobs in
    # Gradio's queue and the API jobs' reservations (services/running.py).
    quota = QueueQuota(lambda user: services.limits.effective(user).queue_quota,
                       lambda blocks: services.running.with_reserved(queued(blocks)),
                       enforced=enforce_quota, ledger=services.shared.jobs, tell_place=gradio_internals.tell_place)
    blocks = build_ui(services, quota)
    # api_open=False: every call, UI or API, goes through the queue (limits, order, cancellation).
    blocks.queue(api_open=False, max_size=services.settings.queue_max_size, default_concurrency_limit=1)
    return blocks


def queued(blocks: Any) -> dict[str, set[str]]:
    """Each user's jobs waiting in Gradio's queue or running there, by id."""
    return gradio_internals.jobs_by_user(blocks, TICKET_STATE_KEY)


def add_dialects(app: FastAPI, blocks: Any, auth: Authenticator, enforce: bool, has_users: bool) -> list[Dialect]:
    """OpenAI's /v1 and AUTOMATIC1111's /sdapi/v1 (api/dialects/), admitted by the same queue quota as Gradio's jobs;
    what the gateway and the body caps need of each."""
    services: Services = app.state.services
    settings = services.settings
    quota = Quota(settings.user_queue_quota, enforce, lambda: queued(blocks), services.shared.jobs,
                  limit_of=lambda user: services.limits.effective(user).queue_quota)  # an admin's override
    return mount_dialects(app, DialectContext(services, auth, quota, lambda: gradio_internals.queue_size(blocks),
                                              settings.queue_max_size, has_users))


def session_janitor(blocks: Any, settings: Settings, services: Services, grants: FileGrants) -> SessionJanitor:
    """Forgets quiet Gradio sessions, renews the claims of those it holds and sweeps the cached files nobody shows
    (api/sessions.py)."""
    return SessionJanitor(blocks, grace_s=settings.session_grace_s, temp_dir=Path(os.environ["GRADIO_TEMP_DIR"]),
                          temp_max_age_s=settings.temp_max_age_s, cache_dirs=[settings.image_cache_dir],
                          claims=services.shared.claims, grants=grants)


def rate_limiter(services: Services, auth: Authenticator, enforce: bool) -> Limiter:
    """slowapi's Limiter on the shared state's storage (process memory, or the replicas' Redis), keyed by user."""
    storage_uri, storage_options = services.shared.limits_storage()
    return Limiter(key_func=auth.rate_key, storage_uri=storage_uri, storage_options=storage_options, enabled=enforce)


def lifespan(services: Services, blocks: Any, janitor: SessionJanitor,
             bridge: mcp.McpBridge) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """What runs while the server serves: warm-up, idle policy, the replica watch, retention, the sweeper and the quota
    ledger."""

    @asynccontextmanager
    async def serving(_: FastAPI) -> AsyncIterator[None]:
        if services.settings.warmup:
            services.warm_up()
        services.residency.start()
        services.replicas.start()
        services.request_log.start()
        services.retention.start()  # issue 25: old images and conversations go, if the server or a user says so
        sweeper = asyncio.create_task(janitor.run(services.settings.temp_sweep_every_s))
        # The quota's count of this replica's jobs, for the other replicas (nothing to do in process memory).
        ledger = asyncio.create_task(services.shared.jobs.run(lambda: services.running.with_reserved(queued(blocks))))
        yield
        sweeper.cancel()
        ledger.cancel()
        bridge.close()
        services.shut_down()

    return serving


def mount_gradio(app: FastAPI, blocks: Any, services: Services, has_users: bool) -> Any:
    """Mount the Blocks at / (login with Atelier's accounts when there are any); return Gradio's mounted App."""
    import gradio as gr

    from ui.app_ui import CSS, THEME

    settings = services.settings
    # show_error=False: an unexpected exception reaches the user as a short "Error"; its traceback goes to
    # the log. Messages we raise on purpose (gr.Error) are always shown.
    gr.mount_gradio_app(app, blocks, path="/", theme=THEME, css=CSS, ssr_mode=False, show_error=False,
                        auth=services.accounts.verify if has_users else None,
                        auth_message="Log in with your Atelier account." if has_users else None,
                        footer_links=["api", "settings"], mcp_server=mcp.mcp_enabled(settings, has_users),
                        # The browser refuses a larger file before sending it; Gradio's upload route stops reading it.
                        max_file_size=settings.upload_max_bytes)
    # No allowed_paths: Gradio would serve every file there to anyone. It copies each result (a stored image, or
    # the local copy of an S3 one) into its own folder, which a mounted app does without checking allowed_paths.
    return next(r.app for r in app.routes if isinstance(r, Mount) and r.path == "")


def adopt_gradio(blocks: Any, gradio_app: Any, services: Services, guard: SessionGuard) -> None:
    """Check the private Gradio attributes Atelier uses, then set them: the session guard, shared logins, the queue's
    idle poll, validators run through the mounted App, lean sessions and cheap skips."""
    gradio_internals.check(blocks, gradio_app)  # before serving: refuse a Gradio without what we use
    gradio_internals.guard_session_state(gradio_app, guard.check_state)  # component_server, deep_link
    shared = services.shared
    if (tokens := shared.login_tokens()) is not None:  # a user logged in on one replica is on all of them
        gradio_internals.share_login_tokens(gradio_app, tokens, shared.agree_cookie_id)
    # Gradio's queue loop wakes every 1 ms while idle; each wake takes the GIL from the thread that drives
    # the model, which made token generation several times slower (bench/text_overhead.py). A push or a freed
    # worker wakes it at once instead, so the poll is only a safety net (a 20 ms poll cost each job ~10-18 ms).
    gradio_internals.set_idle_poll(blocks, QUEUE_IDLE_POLL_S)
    gradio_internals.validate_through(blocks, gradio_app)  # else each job leaves a SessionState behind
    # A session keeps what it changed, not a config of all 240 components (~370 KiB and ~60 ms a session), and an
    # output skipped with gr.skip() costs nothing (Gradio rebuilt the component and its API schema for each).
    gradio_internals.lean_sessions(blocks)
    gradio_internals.cheap_skips(blocks)


def add_gateway(app: FastAPI, blocks: Any, janitor: SessionJanitor, auth: Authenticator, limiter: Limiter,
                enforce: bool, guard: SessionGuard, grants: FileGrants, dialects: list[Dialect],
                bridge: mcp.McpBridge) -> None:
    """The middlewares every request passes, outermost first: CORS, the request id, the request log's row, the MCP
    loopback's login, the body caps, the gateway, the stream watch, MCP's gate and the image editor's upload route
    (each add_middleware wraps the ones added before it)."""
    services: Services = app.state.services
    settings = services.settings
    # Inside the gateway, which has resolved the user and counted the request as an upload.
    app.add_middleware(EditorBlobRoute, blocks=blocks, uploads=services.uploads, guard=guard)
    # Inside the gateway too: with accounts, every MCP request needs the user the gateway resolved.
    app.add_middleware(mcp.McpGate, accounts_required=bridge.accounts_required)
    app.add_middleware(StreamWatch, janitor=janitor)
    app.add_middleware(Gateway, auth=auth, limiter=limiter, blocks=blocks, max_queue=settings.queue_max_size,
                       enforce=enforce, guard=guard, grants=grants, limits_of=services.limits.effective,
                       limits={"image": settings.limit_image_jobs, "chat": settings.limit_chat_messages,
                               "upload": settings.limit_uploads, "login": settings.limit_logins,
                               "read": settings.limit_reads}, dialects=dialects)
    # Unused body routes are refused and every body is capped (the other APIs' by their own caps; an account import
    # by ATELIER_ARCHIVE_MAX_BYTES) before anything reads it.
    app.add_middleware(BodyLimits, upload_max_bytes=settings.upload_max_bytes, dialects=dialects,
                       archive_max_bytes=settings.archive_max_bytes)
    # A request of MCP's loopback client logs in as its user for the gateway and Gradio to see.
    app.add_middleware(mcp.LoopbackLogin, bridge=bridge)
    # Each request's request log row, refusals of the body caps and the gateway included (api/request_rows.py).
    app.add_middleware(RequestRows, client_ip=auth.client_ip, request_log=services.request_log,
                       replica=settings.resolved_replica_name)
    # Outermost: every answer carries the request's id, which its row and its log lines carry too.
    app.add_middleware(RequestId, trusted_proxies=settings.trusted_proxies)
    add_cors(app, settings.cors_origins)  # outside even that: other sites' preflights (api/cross_origin.py)


def add_metrics(app: FastAPI, settings: Settings, auth: Authenticator) -> None:
    """`GET /metrics` in Prometheus' text format, for those ATELIER_METRICS_ACCESS lets in (api/metrics_endpoint.py);
    before Gradio's catch-all mount at /."""
    from api.auth import header_dict

    async def admin(request: Request) -> bool:
        # The user the gateway resolved: a login cookie, or Basic credentials counted by the login throttle.
        name = auth.user_of(request)
        return bool(name) and (await asyncio.to_thread(auth.viewer, name)).admin

    token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
    app.add_route("/metrics", metrics_endpoint(
        settings.metrics_access, token, lambda r: is_local(r.scope, header_dict(r.scope)), admin),
        include_in_schema=False)


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


def serve(settings: Settings) -> None:
    """Build the app and serve it with uvicorn until stopped; with --share, open the share link once it is up. Storage
    that cannot be had stops the start with one line saying what to fix."""
    import uvicorn

    configure_logging(settings.log_format)  # as main() chose it, unless .env chose otherwise
    try:
        app = create_app(settings)
    except CannotStart as err:  # what to fix, said without a traceback
        raise SystemExit(f"Atelier cannot start: {err}") from None
    # Open SSE streams (queue listeners, heartbeats) would hold a graceful shutdown forever. With JSON logs uvicorn
    # keeps no handlers of its own: its lines reach the root logger's formatter.
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="info",
                            timeout_graceful_shutdown=5,
                            **({"log_config": None} if settings.log_format == "json" else {}))
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
