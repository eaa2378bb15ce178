"""Atelier's tools through MCP, with the MCP Python SDK's client (it comes with `gradio[mcp]`): list the tools, make
an image with `generate_image` and save the image content the tool returns.

    python app.py --profile tiny                                   # in one terminal
    python examples/mcp_client.py "a paper boat" --out boat.png

With accounts, pass a key (`python app.py users key create NAME`) as --key or ATELIER_API_KEY. Claude Desktop and
other MCP hosts: examples/mcp/claude_desktop_config.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
from pathlib import Path

from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client


async def run(url: str, key: str | None, prompt: str, out: Path, steps: int) -> None:
    """Connect over Streamable HTTP, list the tools, call generate_image, save its image."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with streamablehttp_client(url.rstrip("/") + "/gradio_api/mcp/", headers=headers) as (read, write, _), \
            ClientSession(read, write) as session:
        await session.initialize()
        tools = (await session.list_tools()).tools
        print("tools:", ", ".join(tool.name for tool in tools))
        result = await session.call_tool("generate_image", {"prompt": prompt, "steps": steps})
        images = [content for content in result.content if content.type == "image"]
        if result.isError or not images:
            raise SystemExit(f"no image: {[getattr(c, 'text', '') for c in result.content]}")
        out.write_bytes(base64.b64decode(images[0].data))
        print(f"saved {out}")


def main() -> None:
    """Parse the arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prompt")
    parser.add_argument("--out", type=Path, default=Path("atelier.png"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--url", default="http://127.0.0.1:7860/")
    parser.add_argument("--key", default=os.environ.get("ATELIER_API_KEY"))
    args = parser.parse_args()
    asyncio.run(run(args.url, args.key, args.prompt, args.out, args.steps))


if __name__ == "__main__":
    main()
