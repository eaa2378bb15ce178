"""List the checkpoints, VAEs, hires upscalers and LoRAs the server offers, by the names its API takes.

    python app.py --profile tiny          # in one terminal
    python examples/models.py
"""

from __future__ import annotations

import argparse

from gradio_client import Client


def main() -> None:
    """Print /models and /loras."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:7860/")
    args = parser.parse_args()
    client = Client(args.url, verbose=False)
    models = client.predict(api_name="/models")
    loras = client.predict(api_name="/loras")
    print("checkpoints (model=...):", ", ".join(models["models"]) or "none beyond the default")
    print("VAEs (vae=...):", ", ".join(models["vaes"]) or "none beyond the checkpoint's own")
    print("hires upscalers (hr_upscaler=...):", ", ".join(models["upscalers"]))
    print("LoRAs (<lora:name:weight> in the prompt):", ", ".join(loras["loras"]) or "none")


if __name__ == "__main__":
    main()
