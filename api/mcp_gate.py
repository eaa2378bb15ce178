"""MCP through Gradio's own server (`mcp_server=True`), behind Atelier's gate.

Gradio makes an MCP tool of each public named endpoint (its docstring says what it does and what its parameters
mean) and serves Streamable HTTP at /gradio_api/mcp and SSE at /gradio_api/mcp/sse, but mounts them without its
login check. So here:

- `McpGate` refuses every MCP request (the tool list included) without a valid API key, login cookie or HTTP basic
  credentials when accounts exist, with a 401 saying how to send one (the gateway resolved the user before).
- A tool call runs the endpoint through Gradio's queue, as Gradio does, over a loopback `gradio_client`: here one
  client (one Gradio session) per user, which proves who it acts for with a secret header of this process;
  `LoopbackLogin` turns that header into a Gradio login for the one request, so the call runs as that user: the
  gateway's rate limits, the validator's queue quota, the history and Stop are the user's, as in the UI.
- The tools take the endpoints' names (generate_image, img2img, png_info, chat, history, …), the parameter
  descriptions come from the docstrings' Args sections, and an image job's result comes back as MCP image content
  (the stored PNGs), with its info as JSON text.
"""

from __future__ import annotations

import contextlib
import copy
import json
import secrets
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from api import gradio_internals
from api.auth import USER_STATE_KEY
from api.gateway import Dialect
from services.accounts import is_loopback
from settings import Settings

MCP_PATH = "/gradio_api/mcp"
LOOPBACK_HEADER = "x-atelier-loopback"
MAX_CLIENTS = 64  # loopback clients kept (one per user recently active on MCP); the oldest is closed past this
IMAGE_TOOLS = ("/generate_image", "/img2img", "/inpaint")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def mcp_enabled(settings: Settings, has_users: bool) -> bool:
    """Whether to serve MCP: the setting, or (auto) where accounts guard it or only this machine can reach it."""
    if settings.mcp != "auto":
        return settings.mcp == "on"
    return has_users or (is_loopback(settings.host) and not settings.share)


def _jsonrpc_error(message: str) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": -32001, "message": message}}).encode()


# What the gateway needs of MCP: its requests count as reads (a tool call counts again, as the job it queues), and
# its refusals are JSON-RPC errors.
DIALECT = Dialect(MCP_PATH, lambda method, path: "read" if method == "POST" else None,
                  lambda status, message: _jsonrpc_error(message))


class McpBridge:
    """The loopback clients and the secret each one proves its user with."""

    def __init__(self, accounts_required: bool) -> None:
        self.accounts_required = accounts_required
        self._lock = threading.Lock()
        self._clients: OrderedDict[str, Any] = OrderedDict()
        self._secrets: dict[str, str] = {}  # user -> secret
        self._users: dict[str, str] = {}  # secret -> user
        self.gradio_app: Any = None

    def user_of(self, secret: str) -> str | None:
        """The user a loopback request acts for, or None for an unknown secret."""
        return self._users.get(secret)

    def client_for(self, request: Any) -> Any:
        """The loopback gradio_client acting for the user of an MCP request (made on first use)."""
        from gradio_client import Client

        user = (request.scope.get("state") or {}).get(USER_STATE_KEY) or ""
        with self._lock:
            if (client := self._clients.get(user)) is not None:
                self._clients.move_to_end(user)
                return client
            secret = self._secrets.get(user) or secrets.token_urlsafe(32)
            self._secrets[user], self._users[secret] = secret, user
        host, port = request.scope.get("server") or ("127.0.0.1", 7860)
        url = f"http://{f'[{host}]' if ':' in host else host}:{port}/"
        # Gradio's own loopback client, with the user's secret on every request it makes (config, queue, stream).
        client = Client(url, headers={LOOPBACK_HEADER: secret}, download_files=False, verbose=False,
                        analytics_enabled=False, ssl_verify=False, _skip_components=False)
        with self._lock:
            self._clients[user] = client
            while len(self._clients) > MAX_CLIENTS:
                _, old = self._clients.popitem(last=False)
                with contextlib.suppress(Exception):
                    old.close()
        return client

    def close(self) -> None:
        """Close every loopback client (the server stops)."""
        with self._lock:
            clients, self._clients = list(self._clients.values()), OrderedDict()
        for client in clients:
            with contextlib.suppress(Exception):
                client.close()


def install(blocks: Any, bridge: McpBridge) -> bool:
    """Adapt Gradio's MCP server (when it runs) to Atelier: tool names, parameter descriptions, image content, and
    the per-user loopback clients; False when MCP is off."""
    return gradio_internals.adapt_mcp(blocks, client=bridge.client_for, tools=tool_names,
                                      describe=describe_parameters, outputs=tool_outputs, api_info=optional_texts)


def optional_texts(api_info: dict[str, Any]) -> dict[str, Any]:
    """Text parameters after an endpoint's first one (negative_prompt, …) may be left out (""), as in the UI and
    for gradio_client: Gradio calls every empty Textbox required, and MCP clients then insist on it."""
    info = copy.deepcopy(api_info)
    for endpoint in info.get("named_endpoints", {}).values():
        for parameter in endpoint.get("parameters", [])[1:]:
            if parameter.get("component") == "Textbox" and not parameter.get("parameter_has_default"):
                parameter["parameter_has_default"], parameter["parameter_default"] = True, ""
    return info


def tool_names(tool_to_endpoint: dict[str, str]) -> dict[str, str]:
    """Each tool named after its endpoint (generate_image rather than the handler's own name, "run")."""
    return {endpoint.lstrip("/"): endpoint for endpoint in tool_to_endpoint.values()}


def describe_parameters(docstring: str, parameters: dict[str, str], names: list[str]) -> dict[str, str]:
    """Parameter descriptions from a docstring's Args section, also for parameters a handler takes as **kwargs
    (Gradio reads only the names of its signature)."""
    described = dict(parameters)
    lines = docstring.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip().startswith(("Args:", "Parameters:"))), None)
    if start is None:
        return described
    for line in lines[start + 1:]:
        name, sep, text = line.strip().partition(":")
        if line.strip().startswith("Returns:"):
            break
        if sep and name.strip() in names and not described.get(name.strip()):
            described[name.strip()] = text.strip()
    return described


def tool_outputs(endpoint: str | None, data: list[Any]) -> list[Any]:
    """A tool's result as MCP content: an image job's stored PNGs (as image content) and its info; the values of
    other tools as JSON text; nothing for outputs the stream left unchanged."""
    if len(data) == 1 and isinstance(data[0], tuple):  # Gradio hands a call without progress its outputs as one tuple
        data = list(data[0])
    if endpoint in IMAGE_TOOLS and len(data) == 4:
        _preview, _progress, gallery, info = data
        data = [*(image for item in gallery or [] if (image := _gallery_image(item)) is not None), info]
    kept = [value for value in data if value is not None and not _unchanged(value)]
    return [value if _is_file(value) or isinstance(value, str) else json.dumps(value, default=str)
            for value in kept]


def _gallery_image(item: Any) -> Any:
    """The file of a gallery item ({"image": file, "caption": …}, or a (file, caption) pair)."""
    if isinstance(item, dict):
        image = item.get("image")
    else:
        image = item[0] if isinstance(item, list | tuple) and item else None
    return image if _is_file(image) else None


def _unchanged(value: Any) -> bool:
    return isinstance(value, dict) and value.get("__type__") == "update"


def _is_file(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("meta"), dict) and "path" in value


class McpGate:
    """ASGI middleware (inside the gateway): MCP requests need a user when accounts exist."""

    def __init__(self, app: ASGIApp, *, accounts_required: bool) -> None:
        self.app = app
        self.accounts_required = accounts_required

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse an MCP request nobody valid sent; pass everything else."""
        if (scope["type"] == "http" and scope["path"].startswith(MCP_PATH) and self.accounts_required
                and (scope.get("state") or {}).get(USER_STATE_KEY) is None):
            body = _jsonrpc_error("Atelier's MCP server needs an API key: send Authorization: Bearer atl_… (create "
                                  "one in the account panel or with `python app.py users key create NAME`).")
            await send({"type": "http.response.start", "status": 401, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b'Bearer realm="Atelier MCP"')]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


class LoopbackLogin:
    """ASGI middleware (outside the gateway): a request of a loopback client, proven by its secret header, carries
    a Gradio login for its user for the one request (made before, removed after), so Gradio's own login check,
    the gateway and the handlers all see that user. Any other request passes untouched."""

    def __init__(self, app: ASGIApp, *, bridge: McpBridge) -> None:
        self.app = app
        self.bridge = bridge

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Log the loopback request in for its user while it runs."""
        secret = _header(scope, LOOPBACK_HEADER.encode()) if scope["type"] == "http" else None
        user = self.bridge.user_of(secret) if secret else None
        if user is None or not self.bridge.accounts_required or self.bridge.gradio_app is None:
            await self.app(scope, receive, send)
            return
        app = self.bridge.gradio_app
        token = secrets.token_urlsafe(32)
        try:
            gradio_internals.add_login(app, token, user)
        except Exception:  # the replicas' Redis is away: Gradio could not check the login either
            await _unavailable(send)
            return
        cookie = f"{gradio_internals.cookie_names(app)[1]}={token}".encode()
        scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"cookie"] + [(b"cookie", cookie)]
        try:
            await self.app(scope, receive, send)
        finally:
            gradio_internals.remove_login(app, token)


async def _unavailable(send: Send) -> None:
    body = b'{"detail": "Atelier cannot reach its shared state (Redis). Try again shortly."}'
    await send({"type": "http.response.start", "status": 503, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"retry-after", b"10")]})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None
