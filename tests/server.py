"""Run the real app with uvicorn on a free loopback port, for gradio_client tests and benchmarks."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from settings import Settings


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve(settings: Settings, apps: list[Any] | None = None) -> Iterator[str]:
    """Serve create_app(settings) in a thread; yield its base URL; shut it down after.

    `apps`, when given, receives the app, so a test can reach its services (app.state.services).
    """
    from api.server import create_app
    from tests.standins.serving import serve_asgi

    app = create_app(settings.model_copy(update={"host": "127.0.0.1"}))
    if apps is not None:
        apps.append(app)
    # Bound to port 0, the OS's free port at bind time: a port picked first and bound later may be taken between.
    with serve_asgi(app, lifespan="on", start_timeout=60) as url:
        yield url + "/"
