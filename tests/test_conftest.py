"""The outside-connection guard itself must work, or every offline claim is hollow."""

from __future__ import annotations

import socket

import pytest

from tests.conftest import OutsideConnectionError


def test_guard_refuses_non_loopback_connection() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock, pytest.raises(OutsideConnectionError):
        sock.connect(("192.0.2.1", 80))  # TEST-NET-1: would never be reached anyway


def test_guard_allows_loopback() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as client:
            client.connect(server.getsockname())
