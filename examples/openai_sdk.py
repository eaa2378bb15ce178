"""Chat with DeepSeek-R1 and make an image through Atelier's OpenAI-compatible API, with the official `openai` SDK
(`pip install openai`). The reasoning streams apart from the answer, in `reasoning_content`.

    python app.py --profile tiny                                   # in one terminal
    python examples/openai_sdk.py "Why is the sky blue?"
    python examples/openai_sdk.py --image "a lighthouse at dusk" --out lighthouse.png

With accounts, pass a key (`python app.py users key create NAME`) as --key or ATELIER_API_KEY; a loopback server
without accounts takes any.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
from pathlib import Path

from openai import OpenAI


def chat(client: OpenAI, model: str, question: str) -> None:
    """Stream a reply: the reasoning dimmed on stderr, the answer on stdout."""
    stream = client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}],
                                            stream=True, stream_options={"include_usage": True})
    for chunk in stream:
        for choice in chunk.choices:
            reasoning = (choice.delta.model_extra or {}).get("reasoning_content")
            if reasoning:
                print(f"\033[2m{reasoning}\033[0m", end="", file=sys.stderr, flush=True)
            if choice.delta.content:
                print(choice.delta.content, end="", flush=True)
        if chunk.usage:
            print(f"\n[{chunk.usage.completion_tokens} tokens, "
                  f"{chunk.usage.completion_tokens_details.reasoning_tokens} of them reasoning]", file=sys.stderr)


def image(client: OpenAI, prompt: str, out: Path, steps: int | None) -> None:
    """Make one image and save the PNG as Atelier stored it (its generation settings in the `parameters` chunk)."""
    extra = {"steps": steps} if steps else {}
    made = client.images.generate(prompt=prompt, response_format="b64_json", extra_body=extra)
    out.write_bytes(base64.b64decode(made.data[0].b64_json))
    print(f"saved {out}")


def main() -> None:
    """Parse the arguments and talk to the server."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("question", nargs="?", help="a question for the text model")
    parser.add_argument("--image", metavar="PROMPT", help="make an image of PROMPT instead")
    parser.add_argument("--out", type=Path, default=Path("atelier.png"), help="where to save the image")
    parser.add_argument("--steps", type=int, help="sampling steps (Atelier's extension field)")
    parser.add_argument("--url", default="http://127.0.0.1:7860/")
    parser.add_argument("--key", default=os.environ.get("ATELIER_API_KEY", "none"))
    args = parser.parse_args()
    client = OpenAI(base_url=args.url.rstrip("/") + "/v1", api_key=args.key)
    if args.image:
        image(client, args.image, args.out, args.steps)
    elif args.question:
        model = next(m.id for m in client.models.list() if (m.model_extra or {}).get("type") == "text")
        chat(client, model, args.question)
    else:
        parser.error("ask a question, or pass --image PROMPT")


if __name__ == "__main__":
    main()
