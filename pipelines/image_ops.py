"""Picture work around the diffusion passes, as AUTOMATIC1111 does it: resize modes, masks, masked content,
"only masked" crops and paste-back, and upscalers for hires fix (Lanczos, latent, spandrel models from a folder)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from contracts import IMAGE_UPSCALERS, LATENT_UPSCALERS, ImageRequest, excerpt
from pipelines.messages import data_folder, hide_paths

# File types spandrel loads upscaler weights from.
UPSCALER_SUFFIXES = (".pth", ".pt", ".safetensors", ".ckpt")
# A1111's latent upscale modes: torch interpolate mode and antialias, by upscaler name.
LATENT_MODES: dict[str, tuple[str, bool]] = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}
assert set(LATENT_MODES) == set(LATENT_UPSCALERS)

Box = tuple[int, int, int, int]  # left, top, right, bottom


class UpscalerUnavailable(RuntimeError):
    """An upscaler model that cannot be used (missing file, spandrel not installed, not an image model)."""


# 1. Resize modes -----------------------------------------------------------------------------------
def resize_image(resize_mode: int, image: Image.Image, width: int, height: int) -> Image.Image:
    """A1111's resize: 0 stretch to the size, 1 scale to cover and crop the middle, 2 scale to fit and fill the
    bars by stretching the picture's edge rows or columns."""
    if resize_mode == 0:
        return _lanczos(image, width, height)
    ratio, src_ratio = width / height, image.width / image.height
    cover = resize_mode == 1
    if (ratio > src_ratio) == cover:  # the width decides: fit it exactly, let the height follow
        src_w, src_h = width, max(1, image.height * width // image.width)
    else:
        src_w, src_h = max(1, image.width * height // image.height), height
    resized = _lanczos(image, src_w, src_h)
    out = Image.new(image.mode, (width, height))
    out.paste(resized, box=(width // 2 - src_w // 2, height // 2 - src_h // 2))
    if cover:
        return out
    if ratio < src_ratio and (fill := height // 2 - src_h // 2) > 0:  # bars above and below
        out.paste(resized.resize((width, fill), box=(0, 0, width, 0)), box=(0, 0))
        out.paste(resized.resize((width, height - fill - src_h), box=(0, src_h, width, src_h)), box=(0, fill + src_h))
    elif ratio > src_ratio and (fill := width // 2 - src_w // 2) > 0:  # bars left and right
        out.paste(resized.resize((fill, height), box=(0, 0, 0, height)), box=(0, 0))
        out.paste(resized.resize((width - fill - src_w, height), box=(src_w, 0, src_w, height)), box=(fill + src_w, 0))
    return out


def _lanczos(image: Image.Image, width: int, height: int) -> Image.Image:
    return image.resize((width, height), resample=Image.Resampling.LANCZOS)


# 2. Masks --------------------------------------------------------------------------------------------
def prepare_mask(mask: Image.Image, invert: int, blur: int) -> Image.Image:
    """The mask as A1111 uses it: grey levels rounded to black or white, inverted if asked, then blurred."""
    binary = mask.convert("L").point(lambda v: 255 if v >= 128 else 0)
    if invert:
        binary = ImageOps.invert(binary)
    return binary.filter(ImageFilter.GaussianBlur(blur)) if blur > 0 else binary


def crop_region(mask: Image.Image, padding: int) -> Box | None:
    """The box around the mask's painted pixels grown by `padding` (within the picture); None for an empty mask."""
    box = mask.getbbox()
    if box is None:
        return None
    x1, y1, x2, y2 = box
    return max(x1 - padding, 0), max(y1 - padding, 0), min(x2 + padding, mask.width), min(y2 + padding, mask.height)


def expand_crop_region(box: Box, width: int, height: int, image_width: int, image_height: int) -> Box:
    """Grow the box to the aspect ratio of width x height (the size it is processed at), staying in the picture."""
    x1, y1, x2, y2 = box
    if (x2 - x1) / (y2 - y1) > width / height:
        y1, y2 = _grow(y1, y2, int((x2 - x1) * height / width - (y2 - y1)), image_height)
    else:
        x1, x2 = _grow(x1, x2, int((y2 - y1) * width / height - (x2 - x1)), image_width)
    return x1, y1, x2, y2


def _grow(low: int, high: int, extra: int, limit: int) -> tuple[int, int]:
    """Widen [low, high) by `extra`, half each side, shifted back inside [0, limit) where it sticks out."""
    low, high = low - extra // 2, high + extra - extra // 2
    if high > limit:
        low, high = low - (high - limit), limit
    if low < 0:
        low, high = 0, min(high - low, limit)
    return low, high


def fill_masked(image: Image.Image, mask: Image.Image) -> Image.Image:
    """A1111's "fill" masked content: the masked area painted with the blurred colours around it."""
    out = Image.new("RGBA", image.size)
    kept = Image.new("RGBa", image.size)
    kept.paste(image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(mask.convert("L")))
    for radius, repeats in ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1)):
        blurred = kept.filter(ImageFilter.GaussianBlur(radius)).convert("RGBA")
        for _ in range(repeats):
            out.alpha_composite(blurred)
    return out.convert("RGB")


@dataclass
class InpaintInputs:
    """What an inpaint (or img2img) pass gets, and what is needed to paste its output back over the original."""

    image: Image.Image  # RGB at the processing size (width x height of the request)
    mask: Image.Image | None  # L at the processing size: white is repainted; None for img2img
    original: Image.Image  # the picture the output is pasted over, at the output size
    overlay_mask: Image.Image | None  # L at the output size: where the new pixels show (0 = the original stays)
    paste_box: Box | None  # with "only masked": where the processed crop goes in the original


def prepare_inputs(req: ImageRequest) -> InpaintInputs:
    """The init image (and mask) of an img2img or inpaint request brought to the processing size, A1111's way."""
    if req.init_image is None:
        raise ValueError("img2img and inpaint need an init_image")
    image = req.init_image.convert("RGB")
    width, height = req.width, req.height
    if req.mode != "inpaint" or req.mask is None:
        resized = resize_image(req.resize_mode, image, width, height)
        return InpaintInputs(resized, None, resized, None, None)
    raw = req.mask.convert("L")
    if raw.size != image.size:  # a mask drawn at another size covers the same picture: stretch it onto it
        raw = _lanczos(raw, *image.size)
    mask = prepare_mask(raw, req.inpainting_mask_invert, req.mask_blur)
    box = crop_region(mask, req.inpaint_full_res_padding) if req.inpaint_full_res else None
    if box is not None:  # "Only masked": work on a crop around the mask at full resolution, keep the picture's size
        box = expand_crop_region(box, width, height, image.width, image.height)
        work_mask = resize_image(2, mask.crop(box), width, height)
        work_image = resize_image(2, image.crop(box), width, height)
        original, overlay_mask = image, mask
    else:
        original = resize_image(req.resize_mode, image, width, height)
        work_mask = resize_image(req.resize_mode, mask, width, height)
        work_image = original
        # Doubled, as A1111 does: the blur's outer half fades the new pixels in, the inner half is fully new.
        overlay_mask = work_mask.point(lambda v: min(255, 2 * v))
    if req.inpainting_fill != 1:  # 2 and 3 change the latents later; their pixels start from "fill" as in A1111
        work_image = fill_masked(work_image, work_mask)
    return InpaintInputs(work_image, work_mask, original, overlay_mask, box)


def paste_back(result: Image.Image, inputs: InpaintInputs) -> Image.Image:
    """Put a pass's output back into the original: uncropped for "only masked", and the original's pixels over
    everything outside the mask, so unmasked pixels come back untouched (A1111's overlay)."""
    if inputs.overlay_mask is None:
        return result
    if inputs.paste_box is not None:
        x1, y1, x2, y2 = inputs.paste_box
        full = inputs.original.copy()
        full.paste(resize_image(1, result.convert("RGB"), x2 - x1, y2 - y1), (x1, y1))
        result = full
    new = np.asarray(result.convert("RGB"), dtype=np.float32)
    old = np.asarray(inputs.original, dtype=np.float32)
    alpha = np.asarray(inputs.overlay_mask, dtype=np.float32)[..., None] / 255.0
    blended = np.rint(old + (new - old) * alpha).astype(np.uint8)
    return Image.fromarray(blended, "RGB")


# 3. Upscalers for hires fix ---------------------------------------------------------------------------
def is_latent_upscaler(name: str) -> bool:
    """True for the upscalers that work on latents (A1111's "Latent ..." names)."""
    return name in LATENT_MODES


def upscale_latents(latents: Any, name: str, width: int, height: int) -> Any:
    """Latents interpolated to width x height pixels (1/8 of it in latent cells), as A1111's latent upscalers do."""
    import torch.nn.functional as F

    mode, antialias = LATENT_MODES[name]
    # antialias only exists for bilinear and bicubic; A1111 passes it the same way.
    return F.interpolate(latents, size=(height // 8, width // 8), mode=mode, antialias=antialias)


def list_upscalers(folder: Path | None) -> list[str]:
    """File stems of the upscaler models in `folder` (sorted), the names hr_upscaler accepts for them."""
    if folder is None or not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.iterdir() if p.is_file() and p.suffix.lower() in UPSCALER_SUFFIXES)


def upscale_image(image: Image.Image, name: str, width: int, height: int, folder: Path | None = None,
                  device: str = "cpu") -> Image.Image:
    """The picture at width x height through an image upscaler: Lanczos ("None" too, as in A1111), Nearest, or
    a model from `folder` run until it reaches the size, then fitted with Lanczos."""
    image = image.convert("RGB")
    if name in IMAGE_UPSCALERS:
        resample = Image.Resampling.NEAREST if name == "Nearest" else Image.Resampling.LANCZOS
        return image.resize((width, height), resample=resample)
    model = load_upscaler(folder, name, device)
    while image.width < width or image.height < height:
        before = image.size
        image = _run_upscaler(model, image, device)
        if image.size == before:  # a 1x model (a denoiser) cannot reach the size: stop and let Lanczos fit it
            break
    return _lanczos(image, width, height)


def load_upscaler(folder: Path | None, name: str, device: str = "cpu") -> Any:
    """The spandrel image model stored as `name` in `folder`, in eval mode on `device`."""
    path = next((folder / f"{name}{s}" for s in UPSCALER_SUFFIXES if folder and (folder / f"{name}{s}").is_file()),
                None)
    if path is None:
        raise UpscalerUnavailable(f"upscaler {excerpt(name)} is not in {data_folder(folder)}; known: "
                                  f"{', '.join(list_upscalers(folder))}")
    try:
        import spandrel
    except ImportError as err:
        raise UpscalerUnavailable(f"upscaler {excerpt(name)} needs the spandrel package (pip install spandrel)"
                                  ) from err
    try:
        model = spandrel.ModelLoader().load_from_file(str(path))
    except Exception as err:  # an unsupported architecture or a damaged file
        raise UpscalerUnavailable(f"upscaler {excerpt(name)} could not be loaded: {hide_paths(str(err))}") from err
    if not isinstance(model, spandrel.ImageModelDescriptor):
        raise UpscalerUnavailable(f"upscaler {excerpt(name)} is not an image-to-image model")
    return model.to(device).eval()


def _run_upscaler(model: Any, image: Image.Image, device: str) -> Image.Image:
    import torch

    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None].to(device)
    with torch.inference_mode():
        out = model(pixels)[0].clamp(0, 1).permute(1, 2, 0).float().cpu().numpy()
    return Image.fromarray(np.rint(out * 255).astype(np.uint8), "RGB")
