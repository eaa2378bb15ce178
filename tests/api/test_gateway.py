"""The gateway middleware on its own: the busy answer, trusted proxies, and what counts against which limit."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from slowapi import Limiter
from slowapi.util import get_remote_address
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from api.auth import Authenticator
from api.gateway import Gateway
from api.ownership import FileGrants
from services.accounts import AccountService


class FakeQueue:
    def __init__(self, size: int) -> None:
        self.size = size
        self.event_ids_to_events: dict[str, Any] = {}

    def __len__(self) -> int:
        return self.size


def app_with(queue_size: int, tmp_path: Path, proxies: list[str] | None = None) -> tuple[TestClient, list[str]]:
    reached: list[str] = []

    async def endpoint(request: Any) -> PlainTextResponse:
        reached.append(request.url.path)
        return PlainTextResponse("ok")

    inner = Starlette(routes=[Route("/{path:path}", endpoint, methods=["GET", "POST"])])
    blocks = SimpleNamespace(_queue=FakeQueue(queue_size),
                             fns={7: SimpleNamespace(concurrency_id="image", api_name="generate_image", inputs=[])},
                             get_api_info=lambda: {"named_endpoints": {"/generate_image": {"parameters": [
                                 {"parameter_name": "prompt", "parameter_has_default": False}]}}})
    auth = Authenticator(AccountService(), required=False, trusted_proxies=proxies or [])
    gateway = Gateway(inner, auth=auth, limiter=Limiter(key_func=get_remote_address), blocks=blocks,
                      grants=FileGrants(str(tmp_path)), max_queue=2,
                      limits={"image": "2/minute", "chat": "9/minute", "upload": "9/minute", "login": "9/minute",
                              "read": "9/minute"})
    return TestClient(gateway), reached


def test_a_full_queue_answers_busy_before_gradio(tmp_path: Path) -> None:
    http, reached = app_with(queue_size=2, tmp_path=tmp_path)
    answer = http.post("/gradio_api/queue/join", json={"fn_index": 7, "session_hash": "s", "data": []})
    assert answer.status_code == 503
    assert "Atelier is busy" in answer.json()["detail"]
    assert answer.headers["retry-after"] == "10"
    assert reached == []


def test_image_joins_count_against_the_image_limit_and_reads_are_free(tmp_path: Path) -> None:
    http, reached = app_with(queue_size=0, tmp_path=tmp_path)
    codes = [http.post("/gradio_api/queue/join", json={"fn_index": 7, "session_hash": f"s{i}", "data": []}).status_code
             for i in range(3)]
    assert codes == [200, 200, 429]
    assert [http.get("/gradio_api/queue/data").status_code for _ in range(5)] == [200] * 5
    assert reached.count("/gradio_api/queue/join") == 2


def test_image_calls_count_against_the_image_limit_in_both_call_forms(tmp_path: Path) -> None:
    http, reached = app_with(queue_size=0, tmp_path=tmp_path)
    codes = [http.post("/gradio_api/call/generate_image", json={"data": ["a fox"]}).status_code,
             http.post("/gradio_api/call/v2/generate_image", json={"prompt": "a fox"}).status_code,
             http.post("/gradio_api/call/v2/generate_image", json={"prompt": "a fox"}).status_code]
    assert codes == [200, 200, 429]
    assert len(reached) == 2


def test_forwarded_addresses_count_only_behind_trusted_proxies(tmp_path: Path) -> None:
    auth = Authenticator(AccountService(), required=False, trusted_proxies=["10.0.0.0/8"])
    scope = {"client": ("10.1.2.3", 1234)}
    assert auth.client_ip(scope, {"x-forwarded-for": "203.0.113.9, 10.9.9.9"}) == "203.0.113.9"
    assert auth.client_ip({"client": ("198.51.100.7", 1)}, {"x-forwarded-for": "203.0.113.9"}) == "198.51.100.7"
    assert auth.client_ip(scope, {}) == "10.1.2.3"


def test_files_outside_the_roots_are_refused(tmp_path: Path) -> None:
    http, reached = app_with(queue_size=0, tmp_path=tmp_path / "cache")
    (tmp_path / "cache").mkdir()
    inside = tmp_path / "cache" / "abc" / "x.png"
    assert http.get(f"/gradio_api/file={inside}").status_code == 200
    for outside in (tmp_path / "secret.db", f"{tmp_path}/cache/../secret.db", "/etc/passwd"):
        assert http.get(f"/gradio_api/file={outside}").status_code == 403
    assert len(reached) == 1
