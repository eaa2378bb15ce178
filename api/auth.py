"""Who is asking: the Gradio login cookie or HTTP basic credentials, resolved to a Viewer."""

from __future__ import annotations

import base64
import binascii
import ipaddress
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any

from api import gradio_internals
from services.accounts import AccountService, Viewer


@dataclass
class Authenticator:
    """Resolves the user of a request; `gradio_app` is Gradio's mounted App (its login tokens live there)."""

    accounts: AccountService
    required: bool
    trusted_proxies: list[str] = field(default_factory=list)
    gradio_app: Any = None

    def user_from_headers(self, headers: dict[str, str]) -> str | None:
        """The logged-in name from a Gradio session cookie or Basic credentials; None when neither is valid."""
        if not self.required:
            return ""  # single-user mode: everything belongs to ''
        if self.gradio_app is not None and (cookie_header := headers.get("cookie")):
            cookies = SimpleCookie()
            try:
                cookies.load(cookie_header)
            except Exception:  # a malformed cookie header is no login
                cookies = SimpleCookie()
            for name in gradio_internals.cookie_names(self.gradio_app):
                morsel = cookies.get(name)
                if morsel is not None and (user := gradio_internals.user_of_token(self.gradio_app, morsel.value)):
                    return user
        authorization = headers.get("authorization", "")
        if authorization.lower().startswith("basic "):
            try:
                name, _, password = base64.b64decode(authorization[6:], validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return None
            if self.accounts.verify(name, password):
                return name
        return None

    def rate_key(self, request: Any) -> str:
        """slowapi's key for a Starlette request: the user when logged in, else the client address."""
        headers = {k.lower(): v for k, v in request.headers.items()}
        user = self.user_from_headers(headers)
        return f"user:{user}" if user else f"ip:{self.client_ip(request.scope, headers)}"

    def viewer(self, name: str) -> Viewer:
        """The Viewer for a resolved name."""
        return self.accounts.viewer(name)

    def client_ip(self, scope: dict[str, Any], headers: dict[str, str]) -> str:
        """The client's address; X-Forwarded-For is believed only when the peer is a trusted proxy."""
        peer = (scope.get("client") or ("unknown", 0))[0]
        forwarded = headers.get("x-forwarded-for")
        if not forwarded or not self._trusted(peer):
            return peer
        # Walk from the right: the first address that is not one of our proxies is the client.
        for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
            if not self._trusted(hop):
                return hop
        return peer

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        for proxy in self.trusted_proxies:
            try:
                if ip in ipaddress.ip_network(proxy, strict=False):
                    return True
            except ValueError:
                continue
        return False


def header_dict(scope: dict[str, Any]) -> dict[str, str]:
    """ASGI headers as a lower-case dict (the last value of a repeated header wins)."""
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
