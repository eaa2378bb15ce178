"""Read the generation settings stored in a PNG (from Atelier or AUTOMATIC1111) through Atelier's public API.

    python app.py --profile tiny          # in one terminal
    python examples/png_info.py atelier.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gradio_client import Client, handle_file


def main() -> None:
    """Print /png_info's answer: the settings in AUTOMATIC1111's API names, and the raw `parameters` text."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", type=Path)
    parser.add_argument("--url", default="http://127.0.0.1:7860/")
    args = parser.parse_args()
    info = Client(args.url, verbose=False).predict(image=handle_file(args.image), api_name="/png_info")
    print(json.dumps(info, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
