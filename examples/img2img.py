"""Rework an image (img2img), or repaint part of it (inpaint, with --mask), through Atelier's public API.

    python app.py --profile tiny          # in one terminal
    python examples/img2img.py sketch.png --prompt "a castle, oil painting" --denoising-strength 0.6
    python examples/img2img.py photo.png --mask mask.png --prompt "a red scarf" --inpaint-full-res

The parameters are AUTOMATIC1111's names and defaults; a mask is white where the image is repainted.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from generate_image import follow  # beside this script
from gradio_client import Client, handle_file


def main() -> None:
    """Submit one /img2img (or /inpaint) job, print its streamed progress, save the PNGs it returns."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("init_image", type=Path, help="the image to start from (PNG, JPEG or WebP)")
    parser.add_argument("--url", default="http://127.0.0.1:7860/")
    parser.add_argument("--prompt", default="a castle on a hill, oil painting")
    parser.add_argument("--negative-prompt", default="blurry, low quality")
    parser.add_argument("--width", type=int, default=512, help="the result's size (the init image is resized)")
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=-1, help="-1 = random; the seed used is printed")
    parser.add_argument("--denoising-strength", type=float, default=0.75, help="0 keeps the image, 1 ignores it")
    parser.add_argument("--resize-mode", type=int, default=0, choices=[0, 1, 2],
                        help="0 just resize, 1 crop and resize, 2 resize and fill")
    parser.add_argument("--model", default="", help="a checkpoint from examples/models.py; empty: the default")
    parser.add_argument("--mask", type=Path, help="inpaint: white = repaint")
    parser.add_argument("--mask-blur", type=int, default=4)
    parser.add_argument("--inpainting-fill", type=int, default=1, choices=[0, 1, 2, 3],
                        help="masked content: 0 fill, 1 original, 2 latent noise, 3 latent nothing")
    parser.add_argument("--inpaint-full-res", action="store_true", help='"Only masked": crop around the mask')
    parser.add_argument("--inpaint-full-res-padding", type=int, default=32)
    parser.add_argument("--inpainting-mask-invert", type=int, default=0, choices=[0, 1],
                        help="0 inpaint masked, 1 inpaint not masked")
    parser.add_argument("--out", type=Path, default=Path("atelier-img2img.png"))
    args = parser.parse_args()

    params: dict[str, Any] = {
        "prompt": args.prompt, "negative_prompt": args.negative_prompt, "width": args.width, "height": args.height,
        "steps": args.steps, "seed": args.seed, "init_image": handle_file(args.init_image),
        "denoising_strength": args.denoising_strength, "resize_mode": args.resize_mode, "model": args.model,
    }
    api_name = "/img2img"
    if args.mask:
        api_name = "/inpaint"
        params.update(mask=handle_file(args.mask), mask_blur=args.mask_blur, inpainting_fill=args.inpainting_fill,
                      inpaint_full_res=args.inpaint_full_res,
                      inpaint_full_res_padding=args.inpaint_full_res_padding,
                      inpainting_mask_invert=args.inpainting_mask_invert)
    client = Client(args.url, verbose=False)
    info = follow(client.submit(**params, api_name=api_name), args.out)
    print(f"job {info['job_id']} ({api_name[1:]}): seed {info['seed']}, {info['width']}x{info['height']}, "
          f"denoising strength {info['denoising_strength']}")


if __name__ == "__main__":
    main()
