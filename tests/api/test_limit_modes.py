"""ATELIER_RATE_LIMITS: rate limits and the queue quota protect a shared server, and stay out of the way of the
one owner of a loopback server without accounts unless asked for."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from slowapi import Limiter
from slowapi.util import get_remote_address
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from api import gradio_internals
from api.auth import Authenticator, limits_apply
from api.gateway import Gateway
from api.ownership import FileGrants
from api.server import create_app
from services.accounts import AccountService
from services.admission import QueueQuota
from storage.db import open_database
from tests.services.conftest import tiny_settings

PASSWORD = "correct horse battery"


@pytest.mark.parametrize(("mode", "host", "share", "has_users", "applies"), [
    ("auto", "127.0.0.1", False, False, False),  # the machine's owner, alone
    ("auto", "localhost", False, False, False),
    ("auto", "127.0.0.1", False, True, True),  # accounts: a shared server
    ("auto", "0.0.0.0", False, False, True),  # exposed (--insecure-no-auth)
    ("auto", "127.0.0.1", True, False, True),  # a share link
    ("on", "127.0.0.1", False, False, True),
    ("off", "0.0.0.0", True, True, False),
])
def test_when_limits_apply(mode: Any, host: str, share: bool, has_users: bool, applies: bool) -> None:
    assert limits_apply(mode, host, share, has_users) is applies


def reads(tmp_path: Path, tiny_sd_dir: Path, accounts: bool = False, n: int = 20, **overrides: Any) -> list[int]:
    """Status codes of `n` REST reads against an app whose read limit is 10 per minute."""
    settings = tiny_settings(tmp_path, tiny_sd_dir, limit_reads="10/minute", **overrides)
    settings.ensure_dirs()
    open_database(settings.db_path)
    if accounts:
        AccountService().add("alice", PASSWORD)
    http = TestClient(create_app(settings))
    return [http.get("/api/history", auth=("alice", PASSWORD) if accounts else None).status_code for _ in range(n)]


def test_the_owner_of_a_loopback_server_is_not_throttled_by_default(tmp_path: Path, tiny_sd_dir: Path) -> None:
    assert reads(tmp_path, tiny_sd_dir) == [200] * 20


def test_the_owner_may_opt_in(tmp_path: Path, tiny_sd_dir: Path) -> None:
    assert reads(tmp_path, tiny_sd_dir, rate_limits="on") == [200] * 10 + [429] * 10


def test_accounts_bring_the_limits(tmp_path: Path, tiny_sd_dir: Path) -> None:
    assert reads(tmp_path, tiny_sd_dir, accounts=True) == [200] * 10 + [429] * 10


def test_an_exposed_server_without_accounts_is_throttled(tmp_path: Path, tiny_sd_dir: Path) -> None:
    assert reads(tmp_path, tiny_sd_dir, host="0.0.0.0", insecure_no_auth=True) == [200] * 10 + [429] * 10


def gateway(enforce: bool) -> TestClient:
    async def endpoint(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    event = SimpleNamespace(concurrency_id="image", api_name="generate_image", inputs=[])
    blocks = SimpleNamespace(_queue=[], fns={7: event})
    return TestClient(Gateway(Starlette(routes=[Route("/{path:path}", endpoint, methods=["GET", "POST"])]),
                              auth=Authenticator(AccountService(), required=False),
                              limiter=Limiter(key_func=get_remote_address), blocks=blocks,
                              grants=FileGrants(os.devnull),  # a folder of no files
                              max_queue=64, enforce=enforce,
                              limits={"image": "10/minute", "chat": "9/minute", "upload": "9/minute",
                                      "login": "5/minute", "read": "9/minute"}))


@pytest.mark.parametrize(("enforce", "expected"), [(False, [200] * 20), (True, [200] * 10 + [429] * 10)])
def test_a_script_of_twenty_prompts(enforce: bool, expected: list[int]) -> None:
    http = gateway(enforce)
    assert [http.post("/gradio_api/queue/join", json={"data": [], "fn_index": 7, "session_hash": f"s{i}"}).status_code
            for i in range(20)] == expected


def test_login_attempts_are_throttled_even_with_limits_off() -> None:
    http = gateway(enforce=False)
    codes = [http.post("/login", data={"username": "bob", "password": f"guess {i}"}).status_code for i in range(7)]
    assert codes == [200] * 5 + [429] * 2


def quota_with(enforced: bool, anonymous_jobs: int) -> QueueQuota:
    quota = QueueQuota(3, lambda blocks: gradio_internals.jobs_by_user(blocks, "ticket"), enforced=enforced)
    events = [SimpleNamespace(username=None, _id=f"e{i}", request=None) for i in range(anonymous_jobs)]
    quota.blocks = SimpleNamespace(_queue=SimpleNamespace(
        event_queue_per_concurrency_id={"image": SimpleNamespace(queue=events)}, active_jobs=[]))
    return quota


def test_the_queue_quota_follows_the_setting_without_accounts() -> None:
    anonymous = SimpleNamespace(username=None)
    assert quota_with(enforced=False, anonymous_jobs=5).problem(anonymous) == ""
    assert quota_with(enforced=True, anonymous_jobs=2).problem(anonymous) == ""
    assert "You already have 3 jobs queued or running" in quota_with(enforced=True, anonymous_jobs=3).problem(
        anonymous)


def test_off_lifts_the_limits_but_not_login_throttling(tmp_path: Path, tiny_sd_dir: Path) -> None:
    settings = tiny_settings(tmp_path, tiny_sd_dir, limit_reads="10/minute", limit_logins="5/minute",
                             rate_limits="off")
    settings.ensure_dirs()
    open_database(settings.db_path)
    AccountService().add("alice", PASSWORD)
    http = TestClient(create_app(settings))
    assert [http.get("/api/history", auth=("alice", PASSWORD)).status_code for _ in range(20)] == [200] * 20
    guesses = [http.get("/api/history", auth=("bob", f"guess {i}")).status_code for i in range(7)]
    assert guesses == [401] * 5 + [429] * 2
