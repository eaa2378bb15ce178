"""Generate an image through Atelier's public API with gradio_client, printing progress as it streams.

    python app.py --profile tiny          # in one terminal
    python examples/generate_image.py --prompt "a lighthouse at dusk" --seed 42 --out lighthouse.png
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from gradio_client import Client


def main() -> None:
    """Submit one /generate_image job, show its streamed updates, save the PNG it returns."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:7860/")
    parser.add_argument("--prompt", default="a lighthouse at dusk, oil painting")
    parser.add_argument("--negative-prompt", default="blurry, low quality")
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--cfg-scale", type=float, default=7.0)
    parser.add_argument("--seed", type=int, default=-1, help="-1 = random; the seed used is printed")
    parser.add_argument("--sampler", default="Euler a")
    parser.add_argument("--batch-count", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("atelier.png"))
    args = parser.parse_args()

    client = Client(args.url, verbose=False)
    job = client.submit(
        prompt=args.prompt, negative_prompt=args.negative_prompt, width=args.width, height=args.height,
        steps=args.steps, cfg_scale=args.cfg_scale, seed=args.seed, sampler=args.sampler,
        batch_count=args.batch_count, api_name="/generate_image",
    )
    # Each streamed update is (preview image, progress text, gallery, info); print the progress line.
    for _preview, progress, _gallery, _info in job:
        if progress:
            print(progress)
    _preview, _progress, gallery, info = job.result()
    print(f"job {info['job_id']}: seed {info['seed']}, {info['width']}x{info['height']}, "
          f"{info['steps']} steps of {info['sampler']} on {info['model']} in {info['duration_s']:.1f} s")
    for index, item in enumerate(gallery):
        # The file is the stored PNG itself, with AUTOMATIC1111's `parameters` chunk intact.
        dest = args.out if len(gallery) == 1 else args.out.with_stem(f"{args.out.stem}-{index}")
        shutil.copyfile(item["image"], dest)
        print(f"saved {dest}")
    history = client.predict(limit=3, api_name="/history")
    print("recent jobs:", [(j["job_id"], j["status"]) for j in history["jobs"]])


if __name__ == "__main__":
    main()
