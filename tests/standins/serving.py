"""Serve an ASGI app with uvicorn on a free loopback port in a background thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def serve_asgi(app: Any, host: str = "127.0.0.1", lifespan: str = "off", start_timeout: float = 30) -> Iterator[str]:
    """Run `app` on `host` and a free port; yield its base URL (no trailing slash); stop it after."""
    import uvicorn

    # Port 0: the OS picks a free port at bind time, so parallel test runs never collide.
    config = uvicorn.Config(app, host=host, port=0, log_level="warning", lifespan=lifespan,
                            timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="standin-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the stand-in server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def wait_for(predicate: Callable[[], object], timeout: float = 5.0) -> bool:
    """Poll `predicate()` until true or `timeout`; for asserting on what a stand-in server saw."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())
