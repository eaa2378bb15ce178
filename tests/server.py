"""Run the real app with uvicorn on a free loopback port, for gradio_client tests and benchmarks."""

from __future__ import annotations

import socket
import threading
import time
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
    import uvicorn

    from app import create_app

    settings = settings.model_copy(update={"host": "127.0.0.1", "port": free_port()})
    app = create_app(settings)
    if apps is not None:
        apps.append(app)
    server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://{settings.host}:{settings.port}/"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
