"""Make an image through Atelier's AUTOMATIC1111-compatible API with the `webuiapi` package (`pip install
webuiapi`), as any script written for AUTOMATIC1111 would, and print the infotext stored in the PNG.

    python app.py --profile tiny                                   # in one terminal
    python examples/webuiapi_txt2img.py "a watercolor fox" --out fox.png

With accounts, AUTOMATIC1111's --api-auth style works: --user NAME and an API key (or the password) as --key or
ATELIER_API_KEY.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import webuiapi
from PIL import PngImagePlugin


def main() -> None:
    """txt2img, then save the PNG with its parameters text."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prompt")
    parser.add_argument("--out", type=Path, default=Path("atelier.png"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=-1)
    parser.add_argument("--url", default="http://127.0.0.1:7860/")
    parser.add_argument("--user", default=os.environ.get("ATELIER_USER"))
    parser.add_argument("--key", default=os.environ.get("ATELIER_API_KEY"))
    args = parser.parse_args()
    api = webuiapi.WebUIApi(baseurl=args.url.rstrip("/") + "/sdapi/v1", username=args.user, password=args.key)
    print("model:", api.util_get_current_model())
    result = api.txt2img(prompt=args.prompt, steps=args.steps, width=args.size, height=args.size, seed=args.seed)
    infotext = result.info["infotexts"][0]
    metadata = PngImagePlugin.PngInfo()
    metadata.add_text("parameters", infotext)
    result.image.save(args.out, pnginfo=metadata)
    print(infotext)
    print(f"saved {args.out} (job {result.info['job_id']} in your history)")


if __name__ == "__main__":
    main()
