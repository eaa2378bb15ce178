"""Other tools' APIs, served beside Gradio's: OpenAI's /v1 and AUTOMATIC1111's /sdapi/v1 (MCP is Gradio's own,
behind api/mcp_gate.py). Each is an adapter: it translates a request into the service call the UI makes, and the
result back into its dialect, so limits, the queue quota, batching, cache, history and Stop apply as in the UI."""

from __future__ import annotations

from fastapi import FastAPI

from api.dialects import a1111, a1111_controlnet, openai
from api.dialects.common import DialectContext
from api.gateway import Dialect

__all__ = ["DialectContext", "mount_dialects"]


def mount_dialects(app: FastAPI, ctx: DialectContext) -> list[Dialect]:
    """Mount /v1, /sdapi/v1 and /controlnet on `app` (before Gradio's catch-all mount at /); what the gateway needs of
    each."""
    app.mount(openai.PREFIX, openai.build_app(ctx))
    app.mount(a1111.PREFIX, a1111.build_app(ctx))
    app.mount(a1111_controlnet.PREFIX, a1111_controlnet.build_app(ctx))  # sd-webui-controlnet's routes
    dialects = []
    for module, largest in ((openai, "/images/edits"), (a1111, "/img2img"), (a1111_controlnet, "/detect")):
        limit = module.body_limit(ctx.settings)
        dialects.append(Dialect(f"{module.PREFIX}/", module.kind, module.refusal, limit, limit(largest)))
    return dialects
