"""Generate an image through Atelier's public API with gradio_client, printing progress as it streams.

    python app.py --profile tiny          # in one terminal
    python examples/generate_image.py --prompt "a lighthouse at dusk" --seed 42 --out lighthouse.png
    python examples/generate_image.py --enable-hr --hr-scale 2 --hr-upscaler Lanczos --denoising-strength 0.5

Hires fix, the checkpoint and the VAE are optional, with AUTOMATIC1111's names and defaults; `<lora:name:weight>`
in the prompt applies a LoRA (examples/models.py lists what the server has).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

from gradio_client import Client
from gradio_client.client import Job


def follow(job: Job, out: Path) -> dict[str, Any]:
    """Print a job's streamed progress, save the PNGs it returns as `out` (-0, -1, … for several), return its info."""
    # Each streamed update is (preview image, progress text, gallery, info); print the progress line.
    for _preview, progress, _gallery, _info in job:
        if progress:
            print(progress)
    _preview, _progress, gallery, info = job.result()
    for index, item in enumerate(gallery):
        # The file is the stored PNG itself, with AUTOMATIC1111's `parameters` chunk intact.
        dest = out if len(gallery) == 1 else out.with_stem(f"{out.stem}-{index}")
        shutil.copyfile(item["image"], dest)
        print(f"saved {dest}")
    return info


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
    parser.add_argument("--enable-hr", action="store_true", help="hires fix: base size, upscale, img2img pass")
    parser.add_argument("--hr-scale", type=float, default=2.0)
    parser.add_argument("--hr-upscaler", default="Latent", help="Latent, Lanczos, or an upscaler model's name")
    parser.add_argument("--hr-second-pass-steps", type=int, default=0, help="0 = the same as --steps")
    parser.add_argument("--denoising-strength", type=float, default=0.75, help="of the hires pass")
    parser.add_argument("--model", default="", help="a checkpoint from examples/models.py; empty: the default")
    parser.add_argument("--vae", default="", help="a VAE from examples/models.py; empty: the checkpoint's own")
    parser.add_argument("--out", type=Path, default=Path("atelier.png"))
    args = parser.parse_args()

    client = Client(args.url, verbose=False)
    job = client.submit(
        prompt=args.prompt, negative_prompt=args.negative_prompt, width=args.width, height=args.height,
        steps=args.steps, cfg_scale=args.cfg_scale, seed=args.seed, sampler=args.sampler,
        batch_count=args.batch_count, enable_hr=args.enable_hr, hr_scale=args.hr_scale, hr_upscaler=args.hr_upscaler,
        hr_second_pass_steps=args.hr_second_pass_steps, denoising_strength=args.denoising_strength,
        model=args.model, vae=args.vae, api_name="/generate_image",
    )
    info = follow(job, args.out)
    print(f"job {info['job_id']}: seed {info['seed']}, {info['width']}x{info['height']}, "
          f"{info['steps']} steps of {info['sampler']} on {info['model']} in {info['duration_s']:.1f} s")
    history = client.predict(limit=3, api_name="/history")
    print("recent jobs:", [(j["job_id"], j["status"]) for j in history["jobs"]])


if __name__ == "__main__":
    main()
