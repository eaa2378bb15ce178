"""ControlNet preprocessors ("modules") under sd-webui-controlnet's names, with its sliders, defaults and maths.

A preprocessor turns the user's picture into a control map (edges, lines, a depth map…). As in sd-webui-controlnet
(scripts/preprocessor/, scripts/controlnet.py, annotator/): the picture is made RGB (transparency over white),
resized so its short side is the *processor resolution* (``processor_res``, or with *pixel perfect* the size it will
have in the generated image), padded to a multiple of 64, processed, unpadded, and then the map is fitted to the
generation size by the unit's resize mode with lvmin's "high quality" resize (nearest for few-colour maps, binary
edge maps re-thinned). OpenCV (opencv-python-headless) does the image processing, as in the extension.

Built in, no download: ``none`` (the picture is the map), ``invert``, ``canny``, ``threshold``, ``blur_gaussian``,
``scribble_xdog``, ``lineart_standard``, ``tile_resample``. Backed by an annotator network whose weights the user puts
in ``<data>/annotators/<folder>/<file>`` (sd-webui-controlnet's ``annotator/downloads`` layout, so that folder can be
copied over): ``softedge_hed``, ``softedge_hedsafe`` and ``scribble_hed`` (lllyasviel's Apache-2.0 HED, defined
here); ``depth_midas`` runs Intel's DPT-Hybrid MiDaS through transformers' ``DPTForDepthEstimation`` (a well-kept
implementation of the network the extension runs), from ``<data>/annotators/midas/dpt-hybrid-midas/`` in transformers'
format. ``openpose`` is listed with the file it needs, but its network is not part of Atelier yet: asking for it says
so (and, before that, which file is missing and where it goes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


class PreprocessorUnavailable(RuntimeError):
    """A preprocessor that cannot run here: its annotator weights are missing, or its network is not built in."""


class MapTooLarge(ValueError):
    """The picture, scaled to the processor resolution, would be too many pixels to process."""


# The most pixels a picture may have once scaled to the processor resolution (its short side at the resolution).
MAX_MAP_PIXELS = 4096 * 4096


@dataclass(frozen=True)
class Slider:
    """One of a preprocessor's numbers, as sd-webui-controlnet's PreprocessorParameter (and its API's JSON)."""

    label: str = "EMPTY_LABEL"
    minimum: float = 0.0
    maximum: float = 1.0
    value: float = 0.5
    step: float = 0.01
    visible: bool = True

    def api_json(self) -> dict[str, Any]:
        """The slider as /controlnet/module_list's module_detail shows it."""
        return {"name": self.label, "value": self.value, "min": self.minimum, "max": self.maximum, "step": self.step}


HIDDEN = Slider(visible=False)  # sd-webui-controlnet's default for an unused slider: 0..1, value 0.5
RESOLUTION = Slider("Resolution", 64, 2048, 512, 8)

Run = Callable[[np.ndarray, int, float, float, Path | None], np.ndarray]


@dataclass(frozen=True)
class Preprocessor:
    """A module: its name and UI label, sliders, and what it runs (the image, resolution, sliders, annotators)."""

    name: str
    label: str
    run: Run
    resolution: Slider = RESOLUTION
    slider_1: Slider = HIDDEN
    slider_2: Slider = HIDDEN
    priority: int = 0
    tags: tuple[str, ...] = ()
    # Files under <data>/annotators it loads; empty for the image-processing ones.
    annotator_files: tuple[str, ...] = field(default=())

    @property
    def model_free(self) -> bool:
        """Whether it runs without annotator weights (sd-webui-controlnet's ``model_free`` in module_detail)."""
        return not self.annotator_files


# --- the image maths (sd-webui-controlnet's, step for step) ------------------------------------------------------


def hwc3(image: np.ndarray) -> np.ndarray:
    """A uint8 picture as H×W×3: grey repeated, alpha composited over white (annotator/util.py HWC3)."""
    if image.dtype != np.uint8:
        raise ValueError(f"a control image must be 8-bit, got {image.dtype}")
    x = image[:, :, None] if image.ndim == 2 else image
    if x.ndim != 3 or x.shape[2] not in (1, 3, 4):
        raise ValueError(f"a control image must be grey, RGB or RGBA, got shape {image.shape}")
    if x.shape[2] == 3:
        return x
    if x.shape[2] == 1:
        return np.concatenate([x, x, x], axis=2)
    color, alpha = x[:, :, :3].astype(np.float32), x[:, :, 3:4].astype(np.float32) / 255.0
    return (color * alpha + 255.0 * (1.0 - alpha)).clip(0, 255).astype(np.uint8)


def _pad64(x: int) -> int:
    return int(np.ceil(float(x) / 64.0) * 64 - x)


def resize_with_pad(image: np.ndarray, resolution: int) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """The picture scaled so its short side is ``resolution`` (cubic up, area down), edge-padded to multiples of 64,
    and the function that cuts a result back to the unpadded size (scripts/utils.py resize_image_with_pad)."""
    import cv2

    img = hwc3(image)
    h_raw, w_raw, _ = img.shape
    k = float(resolution) / float(min(h_raw, w_raw))
    interpolation = cv2.INTER_CUBIC if k > 1 else cv2.INTER_AREA
    h, w = int(np.round(float(h_raw) * k)), int(np.round(float(w_raw) * k))
    img = cv2.resize(img, (w, h), interpolation=interpolation)
    padded = np.pad(img, [[0, _pad64(h)], [0, _pad64(w)], [0, 0]], mode="edge")
    return np.ascontiguousarray(padded), lambda x: np.ascontiguousarray(x[:h, :w])


def pixel_perfect_resolution(image: np.ndarray, target_h: int, target_w: int, resize_mode: str) -> int:
    """The processor resolution that makes the map come out at the generation size: the short side the picture
    will have after the resize mode scales it (external_code.pixel_perfect_resolution)."""
    raw_h, raw_w = image.shape[:2]
    k0, k1 = float(target_h) / float(raw_h), float(target_w) / float(raw_w)
    k = min(k0, k1) if resize_mode == "Resize and Fill" else max(k0, k1)
    return int(np.round(k * float(min(raw_h, raw_w))))


def _none(img: np.ndarray, res: int, a: float, b: float, ann: Path | None) -> np.ndarray:
    return img


def _invert(img: np.ndarray, res: int, a: float, b: float, ann: Path | None) -> np.ndarray:
    return 255 - hwc3(img)


def _canny(img: np.ndarray, res: int, a: float, b: float, ann: Path | None) -> np.ndarray:
    import cv2

    padded, unpad = resize_with_pad(img, res)
    return unpad(cv2.cvtColor(cv2.Canny(padded, int(a), int(b)), cv2.COLOR_GRAY2RGB))


def _threshold(img: np.ndarray, res: int, a: float, b: float, ann: Path | None) -> np.ndarray:
    padded, unpad = resize_with_pad(img, res)
    result = np.zeros_like(padded, dtype=np.uint8)
    result[np.min(padded, axis=2) > a] = 255
    return unpad(result)


def _blur_gaussian(img: np.ndarray, res: int, a: float, b: float, ann: Path | None) -> np.ndarray:
    import cv2

    padded, unpad = resize_with_pad(img, res)
    return cv2.GaussianBlur(unpad(padded), (0, 0), float(a))


def _scribble_xdog(img: np.ndarray, res: int, a: float, b: float, ann: Path | None) -> np.ndarray:
    import cv2

    padded, unpad = resize_with_pad(img, res)
    g1 = cv2.GaussianBlur(padded.astype(np.float32), (0, 0), 0.5)
    g2 = cv2.GaussianBlur(padded.astype(np.float32), (0, 0), 5.0)
    dog = (255 - np.min(g2 - g1, axis=2)).clip(0, 255).astype(np.uint8)
    result = np.zeros_like(padded, dtype=np.uint8)
    result[2 * (255 - dog) > a] = 255
    return unpad(result)


def _lineart_standard(img: np.ndarray, res: int, a: float, b: float, ann: Path | None) -> np.ndarray:
    import cv2

    padded, unpad = resize_with_pad(img, res)
    x = padded.astype(np.float32)
    g = cv2.GaussianBlur(x, (0, 0), 6.0)
    intensity = np.min(g - x, axis=2).clip(0, 255)
    strong = intensity[intensity > 8]
    # np.median of nothing is NaN (a flat picture); the extension then divides by NaN and gets a black map
    intensity /= max(16, float(np.median(strong)) if strong.size else 16.0)
    intensity *= 127
    return unpad(intensity.clip(0, 255).astype(np.uint8))


def _tile_resample(img: np.ndarray, res: int, a: float, b: float, ann: Path | None) -> np.ndarray:
    import cv2

    img = hwc3(img)
    if a < 1.1:
        return img
    h, w = int(float(img.shape[0]) / float(a)), int(float(img.shape[1]) / float(a))
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)


# --- HED soft edges (annotator/hed, Apache-2.0) --------------------------------------------------------------------

HED_FILE = "hed/ControlNetHED.pth"
_hed_cache: dict[Path, Any] = {}


def _hed_network() -> Any:
    """lllyasviel's ControlNetHED_Apache2: five VGG-like stages, each projected to one edge channel."""
    import torch

    class DoubleConvBlock(torch.nn.Module):
        def __init__(self, cin: int, cout: int, layers: int) -> None:
            super().__init__()
            self.convs = torch.nn.Sequential(torch.nn.Conv2d(cin, cout, 3, padding=1),
                                             *[torch.nn.Conv2d(cout, cout, 3, padding=1) for _ in range(layers - 1)])
            self.projection = torch.nn.Conv2d(cout, 1, 1)

        def forward(self, x: Any, down: bool = False) -> tuple[Any, Any]:
            h = torch.nn.functional.max_pool2d(x, 2, 2) if down else x
            for conv in self.convs:
                h = torch.nn.functional.relu(conv(h))
            return h, self.projection(h)

    class ControlNetHED(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm = torch.nn.Parameter(torch.zeros(1, 3, 1, 1))
            specs = ((3, 64, 2), (64, 128, 2), (128, 256, 3), (256, 512, 3), (512, 512, 3))
            for i, spec in enumerate(specs, 1):
                setattr(self, f"block{i}", DoubleConvBlock(*spec))

        def forward(self, x: Any) -> list[Any]:
            h, out = x - self.norm, []
            for i in range(1, 6):
                h, projection = getattr(self, f"block{i}")(h, down=i > 1)
                out.append(projection)
            return out

    return ControlNetHED()


def annotator_path(annotators: Path | None, relative: str) -> Path:
    """The annotator file's path, or PreprocessorUnavailable saying which file is missing and where it goes."""
    if annotators is not None and (Path(annotators) / relative).is_file():
        return Path(annotators) / relative
    where = Path(annotators) / relative if annotators is not None else f"<data>/annotators/{relative}"
    raise PreprocessorUnavailable(
        f"the annotator file {Path(relative).name!r} is missing: put it at {where} (the file lllyasviel/Annotators "
        "publishes, the one sd-webui-controlnet keeps in annotator/downloads).")


def hed_edges(img: np.ndarray, annotators: Path | None, safe: bool = False) -> np.ndarray:
    """HED's soft edge map (H×W uint8) of an RGB picture, as annotator/hed apply_hed computes it."""
    import cv2
    import torch

    path = annotator_path(annotators, HED_FILE)
    net = _hed_cache.get(path)
    if net is None:
        net = _hed_network()
        net.load_state_dict(torch.load(str(path), map_location="cpu", weights_only=True))
        net = _hed_cache[path] = net.float().eval()
    h, w = img.shape[:2]
    with torch.no_grad():
        edges = net(torch.from_numpy(img.copy()).float().permute(2, 0, 1)[None])
    maps = np.stack([cv2.resize(e[0, 0].numpy().astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
                     for e in edges], axis=2)
    edge = 1 / (1 + np.exp(-np.mean(maps, axis=2).astype(np.float64)))
    if safe:  # annotator/util.py safe_step(x, 2): quantised to thirds
        edge = (edge.astype(np.float32) * 3.0).astype(np.int32).astype(np.float32) / 2.0
    return (edge * 255.0).clip(0, 255).astype(np.uint8)


def _hed(img: np.ndarray, res: int, a: float, b: float, ann: Path | None) -> np.ndarray:
    padded, unpad = resize_with_pad(img, res)
    return unpad(hed_edges(padded, ann))


def _hed_safe(img: np.ndarray, res: int, a: float, b: float, ann: Path | None) -> np.ndarray:
    padded, unpad = resize_with_pad(img, res)
    return unpad(hed_edges(padded, ann, safe=True))


# --- MiDaS depth through transformers' DPT (Intel's DPT-Hybrid MiDaS, the depth model ControlNet depth was trained on)

MIDAS_DIR = "midas/dpt-hybrid-midas"
_dpt_cache: dict[Path, Any] = {}


def annotator_folder(annotators: Path | None, relative: str, what: str) -> Path:
    """A transformers model folder under the annotators folder, or PreprocessorUnavailable saying which folder is
    missing, where it goes and what to put in it."""
    folder = Path(annotators) / relative if annotators is not None else None
    if folder is not None and (folder / "config.json").is_file():
        return folder
    where = folder if folder is not None else f"<data>/annotators/{relative}"
    raise PreprocessorUnavailable(f"the annotator folder {where} is missing: put {what} there.")


def _dpt_model(annotators: Path | None) -> Any:
    folder = annotator_folder(annotators, MIDAS_DIR, "the files of Intel/dpt-hybrid-midas (config.json and "
                              "model.safetensors, transformers' DPT format; the extension's "
                              "dpt_hybrid-midas-501f0c75.pt is MiDaS's own format, which it cannot read)")
    model = _dpt_cache.get(folder)
    if model is None:
        from transformers import DPTForDepthEstimation

        model = _dpt_cache[folder] = DPTForDepthEstimation.from_pretrained(folder, local_files_only=True).float().eval()
    return model


def midas_depth(img: np.ndarray, annotators: Path | None) -> np.ndarray:
    """The relative depth (H×W uint8, near is bright) of an RGB picture, as annotator/midas apply_midas computes it
    (pixels to [-1, 1], min-max to 0..255), the network run at its own input size (384² for DPT-Hybrid), as
    transformers' DPT processor for it does, and the depth brought back to the picture's size."""
    import cv2
    import torch

    model = _dpt_model(annotators)
    side = model.config.image_size
    side = side if isinstance(side, int) else int(side[0])
    h, w = img.shape[:2]
    square = cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA if side < min(h, w) else cv2.INTER_CUBIC)
    pixels = torch.from_numpy(np.ascontiguousarray(square)).float().permute(2, 0, 1)[None] / 127.5 - 1.0
    with torch.no_grad():
        depth = model(pixel_values=pixels).predicted_depth
    depth = torch.nn.functional.interpolate(depth[:, None], size=(h, w), mode="bicubic", align_corners=False)[0, 0]
    depth = depth - depth.min()
    depth = depth / depth.max() if float(depth.max()) > 0 else depth
    return (depth * 255.0).clip(0, 255).numpy().astype(np.uint8)


def _depth_midas(img: np.ndarray, res: int, a: float, b: float, ann: Path | None) -> np.ndarray:
    padded, unpad = resize_with_pad(img, res)
    return unpad(midas_depth(padded, ann))


def _nms(x: np.ndarray, t: float, s: float) -> np.ndarray:
    """annotator/util.py nms: blur, keep directional maxima, threshold."""
    import cv2

    x = cv2.GaussianBlur(x.astype(np.float32), (0, 0), s)
    y = _directional_maxima(x)
    z = np.zeros_like(y, dtype=np.uint8)
    z[y > t] = 255
    return z


def _scribble_hed(img: np.ndarray, res: int, a: float, b: float, ann: Path | None) -> np.ndarray:
    import cv2

    result = _nms(_hed(img, res, a, b, ann), 127, 3.0)
    result = cv2.GaussianBlur(result, (0, 0), 3.0)
    result[result > 4] = 255
    result[result < 255] = 0
    return result


def _not_built_in(name: str, files: tuple[str, ...]) -> Run:
    def run(img: np.ndarray, res: int, a: float, b: float, ann: Path | None) -> np.ndarray:
        for relative in files:
            annotator_path(ann, relative)
        raise PreprocessorUnavailable(
            f"the {name} preprocessor's network is not part of Atelier yet; make the control map elsewhere (for "
            "example with sd-webui-controlnet) and use it with the module 'none'.")

    return run


_OPENPOSE = ("openpose/body_pose_model.pth",)

_ALL = (
    Preprocessor("none", "none", _none, priority=10),
    Preprocessor("invert", "invert (from white bg & black line)", _invert, resolution=HIDDEN, priority=20,
                 tags=("Canny", "Lineart", "Scribble", "MLSD")),
    Preprocessor("canny", "canny", _canny, slider_1=Slider("Low Threshold", 1, 255, 100, 1),
                 slider_2=Slider("High Threshold", 1, 255, 200, 1), priority=100, tags=("Canny",)),
    Preprocessor("threshold", "threshold", _threshold, slider_1=Slider("Binarization Threshold", 0, 255, 127)),
    Preprocessor("blur_gaussian", "blur_gaussian", _blur_gaussian, slider_1=Slider("Sigma", 0.01, 64.0, 9.0),
                 tags=("Tile",)),
    Preprocessor("scribble_xdog", "scribble_xdog", _scribble_xdog, slider_1=Slider("XDoG Threshold", 1, 64, 32),
                 tags=("Scribble", "SparseCtrl")),
    Preprocessor("lineart_standard", "lineart_standard (from white bg & black line)", _lineart_standard,
                 priority=100, tags=("Lineart",)),
    Preprocessor("tile_resample", "tile_resample", _tile_resample,
                 slider_1=Slider("Down Sampling Rate", 1.0, 8.0, 1.0), priority=100, tags=("Tile",)),
    Preprocessor("hed", "softedge_hed", _hed, tags=("SoftEdge",), annotator_files=(HED_FILE,)),
    Preprocessor("hed_safe", "softedge_hedsafe", _hed_safe, tags=("SoftEdge",), annotator_files=(HED_FILE,)),
    Preprocessor("scribble_hed", "scribble_hed", _scribble_hed, tags=("Scribble", "SparseCtrl"),
                 annotator_files=(HED_FILE,)),
    Preprocessor("depth", "depth_midas", _depth_midas, priority=100, tags=("Depth",), annotator_files=(MIDAS_DIR,)),
    Preprocessor("openpose", "openpose", _not_built_in("openpose", _OPENPOSE), tags=("OpenPose",),
                 annotator_files=_OPENPOSE),
)
PREPROCESSORS: dict[str, Preprocessor] = {p.name: p for p in _ALL}
_BY_LABEL = {p.label: p for p in _ALL}


def get_preprocessor(module: str) -> Preprocessor | None:
    """The preprocessor a unit's ``module`` names: by its UI label or its internal name, as the extension does."""
    return _BY_LABEL.get(module) or PREPROCESSORS.get(module)


def module_list(alias_names: bool = False) -> list[str]:
    """The module names in sd-webui-controlnet's order: none first, then by priority and label, descending."""
    rest = sorted((p for p in _ALL if p.name != "none"), key=lambda p: str(p.priority).zfill(8) + p.label,
                  reverse=True)
    return [p.label if alias_names else p.name for p in [PREPROCESSORS["none"], *rest]]


def module_detail(alias_names: bool = False) -> dict[str, Any]:
    """/controlnet/module_list's ``module_detail``: whether each needs no model, and its visible sliders."""
    out = {}
    for name in module_list(alias_names):
        p = get_preprocessor(name)
        assert p is not None  # every listed name resolves
        sliders = [s.api_json() for s in (p.resolution, p.slider_1, p.slider_2) if s.visible]
        out[name] = {"model_free": p.model_free, "sliders": sliders}
    return out


# --- fitting the map to the generation size (scripts/controlnet.py detectmap_proc) --------------------------------


def _directional_maxima(x: np.ndarray) -> np.ndarray:
    """Keep the pixels that are maxima along one of four directions (scripts/lvminthin.py nake_nms)."""
    import cv2

    kernels = ([[0, 0, 0], [1, 1, 1], [0, 0, 0]], [[0, 1, 0], [0, 1, 0], [0, 1, 0]],
               [[1, 0, 0], [0, 1, 0], [0, 0, 1]], [[0, 0, 1], [0, 1, 0], [1, 0, 0]])
    y = np.zeros_like(x)
    for f in kernels:
        np.putmask(y, cv2.dilate(x, kernel=np.array(f, dtype=np.uint8)) == x, x)
    return y


def _thin_kernels(raw: list[list[list[int]]]) -> list[np.ndarray]:
    base = [np.array(k, dtype=np.int32) for k in raw]
    return [np.rot90(k, r, axes=(0, 1)) for r in range(4) for k in base]


_THIN = _thin_kernels([[[-1, -1, -1], [0, 1, 0], [1, 1, 1]], [[0, -1, -1], [1, 1, -1], [0, 1, 0]]])
_PRUNE = _thin_kernels([[[-1, -1, -1], [-1, 1, -1], [0, 0, -1]], [[-1, -1, -1], [-1, 1, -1], [-1, 0, 0]]])


def _thin_once(x: np.ndarray, kernels: list[np.ndarray]) -> tuple[np.ndarray, bool]:
    import cv2

    done = True
    for k in kernels:
        hits = np.where(cv2.morphologyEx(x, cv2.MORPH_HITMISS, k) > 127)
        x[hits] = 0
        done = done and hits[0].shape[0] == 0
    return x, done


def lvmin_thin(x: np.ndarray, prunings: bool = True) -> np.ndarray:
    """Thin binary edges to one pixel (Lvmin Zhang's "High Quality Edge Thinning using Pure Python")."""
    for _ in range(32):
        x, done = _thin_once(x, _THIN)
        if done:
            break
    if prunings:
        x, _ = _thin_once(x, _PRUNE)
    return x


def high_quality_resize(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """lvmin's control-map resize to ``size`` (w, h): nearest for maps of 3..199 colours, area down, cubic up;
    binary maps re-binarised (Otsu) and one-pixel edges thinned back to one pixel."""
    import cv2

    if x.shape[0] == size[1] and x.shape[1] == size[0]:
        return x
    smaller = size[0] * size[1] < x.shape[0] * x.shape[1]
    bigger = size[0] * size[1] > x.shape[0] * x.shape[1]
    colours = len(np.unique(x.reshape(-1, x.shape[2]), axis=0))
    binary = colours == 2 and np.min(x) < 16 and np.max(x) > 240
    one_pixel_edge = False
    if binary:
        kernel = np.ones((3, 3), dtype=np.uint8)
        opened = cv2.dilate(cv2.erode(x, kernel, iterations=1), kernel, iterations=1)
        one_pixel_edge = np.where(opened < x)[0].shape[0] * 2 > np.where(x > 127)[0].shape[0]
    interpolation = cv2.INTER_NEAREST if 2 < colours < 200 else cv2.INTER_AREA if smaller else cv2.INTER_CUBIC
    y = cv2.resize(x, size, interpolation=interpolation)
    if binary:
        y = np.mean(y.astype(np.float32), axis=2).clip(0, 255).astype(np.uint8)
        if one_pixel_edge:
            y = _directional_maxima(y)
            _, y = cv2.threshold(y, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
            y = lvmin_thin(y, prunings=bigger)
        else:
            _, y = cv2.threshold(y, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        y = np.stack([y] * 3, axis=2)
    return y


def fit_map(detected: np.ndarray, resize_mode: str, height: int, width: int) -> np.ndarray:
    """The control map at width×height by the resize mode: stretched, cropped after covering (Crop and Resize), or
    fitted inside and the rest filled with the border's median colour (Resize and Fill)."""
    m = hwc3(detected)
    if resize_mode == "Just Resize":
        return high_quality_resize(m, (width, height))
    old_h, old_w = float(m.shape[0]), float(m.shape[1])
    k0, k1 = float(height) / old_h, float(width) / old_w
    if resize_mode == "Resize and Fill":
        k = min(k0, k1)
        borders = np.concatenate([m[0, :, :], m[-1, :, :], m[:, 0, :], m[:, -1, :]], axis=0)
        background = np.tile(np.median(borders, axis=0).astype(m.dtype)[None, None], [height, width, 1])
        m = high_quality_resize(m, (int(np.round(old_w * k)), int(np.round(old_h * k))))
        top, left = max(0, (height - m.shape[0]) // 2), max(0, (width - m.shape[1]) // 2)
        background[top:top + m.shape[0], left:left + m.shape[1]] = m
        return background
    k = max(k0, k1)
    m = high_quality_resize(m, (int(np.round(old_w * k)), int(np.round(old_h * k))))
    top, left = max(0, (m.shape[0] - height) // 2), max(0, (m.shape[1] - width) // 2)
    return np.ascontiguousarray(m[top:top + height, left:left + width])


def detect(module: str, image: Image.Image | np.ndarray, resolution: int, threshold_a: float, threshold_b: float,
           annotators: Path | None = None) -> np.ndarray:
    """Run a preprocessor on a picture at a processor resolution: the map (H×W×3 uint8) before fitting."""
    p = get_preprocessor(module)
    if p is None:
        raise ValueError(f"unknown ControlNet module {module!r}; known: {', '.join(module_list())}")
    array = np.asarray(image.convert("RGBA") if isinstance(image, Image.Image) else image)
    if p.resolution.visible:
        check_map_size(array.shape[0], array.shape[1], int(resolution))
    return hwc3(p.run(hwc3(array), int(resolution), float(threshold_a), float(threshold_b), annotators))


def check_map_size(height: int, width: int, resolution: int) -> None:
    """MapTooLarge when scaling the picture's short side to the processor resolution would make more than
    MAX_MAP_PIXELS (a long thin picture at a high resolution: gigabytes for one map)."""
    k = float(resolution) / float(max(1, min(height, width)))
    h, w = int(np.round(height * k)), int(np.round(width * k))
    if h * w > MAX_MAP_PIXELS:
        raise MapTooLarge(f"at processor resolution {resolution} the {width}x{height} picture would be processed at "
                          f"{w}x{h} ({h * w:,} pixels); at most {MAX_MAP_PIXELS:,} are allowed: lower the resolution "
                          "or crop the picture to a less elongated shape.")
