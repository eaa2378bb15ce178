"""A plain Gradio app with one queued echo endpoint and nothing of Atelier: what any queued call through
gradio_client costs on this machine, measured beside the app in bench/image_overhead.py.

    python bench/_vanilla_gradio.py PORT
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def echo(text: str) -> str:
    """Return the text unchanged: the call costs only Gradio and gradio_client."""
    return text


def main() -> None:
    """Serve /echo on 127.0.0.1:PORT until killed."""
    import gradio as gr

    port = int(sys.argv[1])
    with gr.Blocks() as demo:
        box = gr.Textbox()
        out = gr.Textbox()
        gr.Button().click(echo, box, out, api_name="echo")
    demo.queue()
    demo.launch(server_name="127.0.0.1", server_port=port, quiet=True, show_error=False)


if __name__ == "__main__":
    main()
