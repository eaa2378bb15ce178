"""HTTP basic credentials: verified once per request, off the event loop, remembered only when right and only
for a short while, and counted against the login limit exactly like the login form."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.auth import VERIFIED_TTL_S, VERIFY_THREADS, Authenticator
from api.server import create_app
from services.accounts import AccountService
from storage.db import open_database
from tests.services.conftest import tiny_settings

PASSWORD = "correct horse battery"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the server's loop (uvicorn runs asyncio)


class Calls:
    """Wraps AccountService.verify: how often argon2 ran, and whether it ran on an event loop's thread."""

    def __init__(self, verify: Callable[[str, str], bool]) -> None:
        self.verify, self.names, self.on_loop = verify, [], []
        self.gate: threading.Event | None = None  # when set, checks wait for it (to overlap requests)

    def __call__(self, name: str, password: str) -> bool:
        self.names.append(name)
        try:
            asyncio.get_running_loop()
            self.on_loop.append(True)
        except RuntimeError:
            self.on_loop.append(False)
        if self.gate is not None:
            self.gate.wait(timeout=30)
        return self.verify(name, password)


def app_with_accounts(tmp_path: Path, tiny_sd_dir: Path, **overrides: Any) -> tuple[FastAPI, Calls]:
    settings = tiny_settings(tmp_path, tiny_sd_dir, **overrides)
    settings.ensure_dirs()
    open_database(settings.db_path)
    for name in ("alice", "bob", "erin"):
        AccountService().add(name, PASSWORD)
    app = create_app(settings)
    accounts = app.state.services.accounts
    calls = Calls(accounts.verify)
    accounts.verify = calls  # the gateway's Authenticator holds this same service
    return app, calls


def test_a_rest_read_checks_basic_credentials_once_off_the_loop_and_remembers_only_success(
        tmp_path: Path, tiny_sd_dir: Path) -> None:
    app, calls = app_with_accounts(tmp_path, tiny_sd_dir)
    http = TestClient(app)
    assert http.get("/api/history", auth=("alice", PASSWORD)).status_code == 200
    assert calls.names == ["alice"]  # not once for the gateway, once for slowapi's key and once for the route
    assert calls.on_loop == [False]
    assert http.get("/api/history", auth=("alice", PASSWORD)).status_code == 200
    assert http.get("/api/images/999", auth=("alice", PASSWORD)).status_code == 404
    assert calls.names == ["alice"]  # remembered
    for _ in range(2):
        assert http.get("/api/history", auth=("bob", "wrong password")).status_code == 401
    assert calls.names == ["alice", "bob", "bob"]  # a failure is never remembered
    assert http.get("/api/history").status_code == 401
    # Pages and assets never cost a check, whatever they carry.
    assert http.get("/", auth=("bob", "another guess")).status_code == 200
    assert calls.names == ["alice", "bob", "bob"]


def test_basic_guesses_meet_the_login_limit_shared_with_the_login_form(tmp_path: Path, tiny_sd_dir: Path) -> None:
    app, calls = app_with_accounts(tmp_path, tiny_sd_dir, limit_logins="5/minute")
    http = TestClient(app)
    for i in range(3):
        assert http.post("/login", data={"username": "bob", "password": f"guess {i}"}).status_code != 200
    for i in range(2):
        assert http.get("/api/history", auth=("bob", f"guess {i + 3}")).status_code == 401
    assert len(calls.names) == 2
    blocked = http.get("/api/history", auth=("bob", PASSWORD))  # even the right password, until the window ends
    assert blocked.status_code == 429
    assert "Too many login attempts: the limit is 5 per 1 minute" in blocked.json()["detail"]
    assert int(blocked.headers["retry-after"]) > 0
    assert len(calls.names) == 2  # refused before any argon2 work
    assert http.post("/login", data={"username": "bob", "password": PASSWORD}).status_code == 429
    # Another account from the same address is not locked out.
    assert http.get("/api/history", auth=("erin", PASSWORD)).status_code == 200


@pytest.mark.anyio
async def test_a_concurrent_burst_of_guesses_is_cut_at_the_login_limit(tmp_path: Path, tiny_sd_dir: Path) -> None:
    app, calls = app_with_accounts(tmp_path, tiny_sd_dir, limit_logins="5/minute")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://atelier") as http:
        answers = await asyncio.gather(*(http.get("/api/history", auth=("bob", f"guess {i}")) for i in range(20)))
        codes = sorted(a.status_code for a in answers)
        assert codes == [401] * 5 + [429] * 15
        assert len(calls.names) == 5
        # Nothing about the guesses touches a free route.
        assert (await http.get("/api/health")).status_code == 200


def test_the_login_form_keeps_working(tmp_path: Path, tiny_sd_dir: Path) -> None:
    app, _ = app_with_accounts(tmp_path, tiny_sd_dir)
    http = TestClient(app)
    assert http.post("/login", data={"username": "alice", "password": PASSWORD}).status_code == 200
    assert http.get("/api/history").status_code == 200  # the Gradio cookie, not basic


@pytest.fixture
def accounts(tmp_path: Path) -> AccountService:
    open_database(tmp_path / "atelier.db")
    service = AccountService()
    service.add("alice", PASSWORD)
    return service


def basic(name: str, password: str) -> dict[str, str]:
    return {"authorization": httpx.BasicAuth(name, password)._auth_header}


def never(name: str) -> None:
    raise AssertionError(f"no new check was expected for {name}")


@pytest.mark.anyio
async def test_a_changed_password_or_removed_account_stops_working_after_the_ttl(accounts: AccountService) -> None:
    now = [0.0]
    auth = Authenticator(accounts, required=True, clock=lambda: now[0])
    attempts: list[str] = []
    assert await auth.authenticate(basic("alice", PASSWORD), attempts.append) == "alice"
    accounts.set_password("alice", "a brand new password")
    now[0] = VERIFIED_TTL_S - 1
    assert await auth.authenticate(basic("alice", PASSWORD), never) == "alice"  # within the TTL
    now[0] = VERIFIED_TTL_S + 1
    assert await auth.authenticate(basic("alice", PASSWORD), attempts.append) is None
    assert await auth.authenticate(basic("alice", "a brand new password"), attempts.append) == "alice"
    accounts.remove("alice")
    now[0] = 2 * VERIFIED_TTL_S + 2
    assert await auth.authenticate(basic("alice", "a brand new password"), attempts.append) is None
    assert await auth.authenticate(basic("alice", "a brand new password"), attempts.append) is None
    # Credentials proven right before are re-checked without counting as guesses; once wrong, they count.
    assert attempts == ["alice", "alice", "alice"]


@pytest.mark.anyio
async def test_the_memory_is_bounded_and_holds_no_password(accounts: AccountService) -> None:
    accounts.add("bob", PASSWORD)
    auth = Authenticator(accounts, required=True, max_entries=1)
    attempts: list[str] = []
    for name in ("alice", "bob", "alice"):
        assert await auth.authenticate(basic(name, PASSWORD), attempts.append) == name
    assert attempts == ["alice", "bob", "alice"]  # bob's entry pushed alice's out
    assert len(auth._verified) == 1
    assert all(PASSWORD.encode() not in key and b"alice" not in key for key in auth._verified)


@pytest.mark.anyio
async def test_the_same_credentials_at_once_share_one_check(accounts: AccountService) -> None:
    calls = Calls(accounts.verify)
    calls.gate = threading.Event()
    accounts.verify = calls  # type: ignore[method-assign]
    auth = Authenticator(accounts, required=True)
    attempts: list[str] = []
    waiting = [asyncio.ensure_future(auth.authenticate(basic("alice", PASSWORD), attempts.append))
               for _ in range(8)]
    while not calls.names:
        await asyncio.sleep(0.01)
    calls.gate.set()
    assert await asyncio.gather(*waiting) == ["alice"] * 8
    assert calls.names == ["alice"]
    assert attempts == ["alice"]


@pytest.mark.anyio
async def test_a_returning_user_is_not_queued_behind_a_burst_of_guesses(accounts: AccountService) -> None:
    real, gate, started = accounts.verify, threading.Event(), []

    def verify(name: str, password: str) -> bool:
        started.append(name)
        if name != "alice":
            gate.wait(timeout=30)  # the guesses hold every thread for new credentials
        return real(name, password)

    accounts.verify = verify  # type: ignore[method-assign]
    now = [0.0]
    auth = Authenticator(accounts, required=True, clock=lambda: now[0])
    assert await auth.authenticate(basic("alice", PASSWORD), [].append) == "alice"
    guesses = [asyncio.ensure_future(auth.authenticate(basic(f"guess{i}", "wrong"), [].append))
               for i in range(VERIFY_THREADS + 4)]
    while len(started) < 1 + VERIFY_THREADS:
        await asyncio.sleep(0.01)
    now[0] = VERIFIED_TTL_S + 1  # her remembered check lapses in the middle of the burst
    assert await auth.authenticate(basic("alice", PASSWORD), never) == "alice"
    assert not any(g.done() for g in guesses)  # she did not wait for them
    gate.set()
    assert await asyncio.gather(*guesses) == [None] * len(guesses)
