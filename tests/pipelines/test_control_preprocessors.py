"""ControlNet preprocessors: sd-webui-controlnet's module list, its resolution and resize maths, the built-in maps,
and annotator files that are missing or present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.control_preprocessors import (
    HED_FILE,
    PreprocessorUnavailable,
    detect,
    fit_map,
    hwc3,
    module_detail,
    module_list,
    pixel_perfect_resolution,
)


def square(size: tuple[int, int] = (64, 64), value: int = 255, box: tuple[int, int, int, int] = (16, 16, 48, 48),
           background: int = 0) -> np.ndarray:
    image = Image.new("RGB", size, (background,) * 3)
    image.paste((value,) * 3, box)
    return np.asarray(image)


def test_the_module_list_is_the_extensions_order_and_detail() -> None:
    names = module_list()
    assert names[0] == "none"
    # Priority 100 first (by label, descending), then invert (20), then the rest.
    assert names[1:5] == ["tile_resample", "lineart_standard", "depth", "canny"]
    assert names.index("invert") < names.index("threshold")
    assert module_list(alias_names=True)[:4] == ["none", "tile_resample",
                                                 "lineart_standard (from white bg & black line)", "depth_midas"]
    detail = module_detail()
    assert detail["canny"] == {"model_free": True, "sliders": [
        {"name": "Resolution", "value": 512, "min": 64, "max": 2048, "step": 8},
        {"name": "Low Threshold", "value": 100, "min": 1, "max": 255, "step": 1},
        {"name": "High Threshold", "value": 200, "min": 1, "max": 255, "step": 1}]}
    assert detail["invert"]["sliders"] == []
    assert detail["hed"]["model_free"] is False


def test_the_picture_is_made_rgb_with_alpha_over_white() -> None:
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)  # fully transparent black
    assert (hwc3(rgba) == 255).all()
    assert hwc3(np.full((2, 2), 7, dtype=np.uint8)).shape == (2, 2, 3)
    with pytest.raises(ValueError, match="8-bit"):
        hwc3(np.zeros((2, 2, 3), dtype=np.float32))


def test_the_processor_resolution_sets_the_maps_short_side() -> None:
    picture = square((200, 100))  # 200 wide, 100 high
    assert detect("canny", picture, 64, 100, 200).shape == (64, 128, 3)
    assert detect("canny", picture, 256, 100, 200).shape == (256, 512, 3)
    assert detect("none", picture, 64, 0, 0).shape == (100, 200, 3)  # none leaves the picture as it is
    assert (detect("invert", picture, 512, 0, 0) == 255 - picture).all()


def test_pixel_perfect_is_the_size_the_picture_will_have() -> None:
    picture = np.zeros((300, 200, 3), dtype=np.uint8)
    assert pixel_perfect_resolution(picture, 512, 512, "Crop and Resize") == 512  # covers: the short side 512
    assert pixel_perfect_resolution(picture, 512, 512, "Just Resize") == 512
    assert pixel_perfect_resolution(picture, 512, 512, "Resize and Fill") == 341  # fits: 200 × 512/300


def test_canny_uses_its_thresholds() -> None:
    faint = square(value=20)  # a step of 20: a weak edge
    assert detect("canny", faint, 64, 100, 200).max() == 0
    edges = detect("canny", faint, 64, 10, 20)
    assert edges.max() == 255
    assert edges[32, 32].max() == 0  # inside the square: no edge


def test_line_maps_find_dark_lines_on_white() -> None:
    drawing = square(value=0, box=(30, 8, 33, 56), background=255)  # a black vertical line on white
    lines = detect("lineart_standard", drawing, 64, 0, 0)
    assert lines[32, 31].max() > 100 > lines[32, 5].max()  # bright line, dark elsewhere
    flat = detect("lineart_standard", np.full((64, 64, 3), 200, dtype=np.uint8), 64, 0, 0)
    assert flat.max() == 0  # a flat picture: an empty map, not NaN
    scribble = detect("scribble_xdog", drawing, 64, 32, 0)
    assert scribble[32, 31].max() == 255
    assert scribble[32, 5].max() == 0
    faint = square(value=215, box=(30, 8, 33, 56), background=255)
    kept = [(detect("scribble_xdog", faint, 64, t, 0) == 255).sum() for t in (1, 32, 64)]
    assert kept[0] > kept[1] > kept[2] > 0  # a higher threshold keeps less of a faint line
    binary = detect("threshold", square(value=200), 64, 127, 0)
    assert set(np.unique(binary)) == {0, 255}


def test_blur_and_tile_resample() -> None:
    blurred = detect("blur_gaussian", square(), 64, 3.0, 0)
    assert 0 < blurred[16, 32].max() < 255
    assert detect("tile_resample", square(), 512, 1.0, 0).shape == (64, 64, 3)
    assert detect("tile_resample", square(), 512, 2.0, 0).shape == (32, 32, 3)


@pytest.mark.parametrize(("mode", "inside", "outside"), [
    # A 100×200 (h×w) map into 64×64.
    ("Just Resize", (0, 0), None),  # stretched: every pixel comes from the map
    ("Crop and Resize", (0, 0), None),  # covered (64×128) and the middle kept
    ("Resize and Fill", (32, 32), (0, 32)),  # fitted (32×64) in the middle, the border colour around
])
def test_the_map_is_fitted_by_the_resize_mode(mode: str, inside: tuple[int, int],
                                              outside: tuple[int, int] | None) -> None:
    detected = np.full((100, 200, 3), 90, dtype=np.uint8)
    detected[0, :] = detected[-1, :] = detected[:, 0] = detected[:, -1] = 30  # a border of another colour
    fitted = fit_map(detected, mode, 64, 64)
    assert fitted.shape == (64, 64, 3)
    if outside is not None:
        assert fitted[outside].tolist() == [30, 30, 30]  # the border's median fills the rest
        assert fitted[inside].tolist() == [90, 90, 90]
    if mode == "Crop and Resize":
        assert fitted[32, 0].tolist() == [90, 90, 90]  # the left border was cropped away


def test_one_pixel_edges_stay_thin_when_enlarged() -> None:
    edges = np.zeros((32, 32, 3), dtype=np.uint8)
    edges[16, 4:28] = 255  # a one-pixel line
    big = fit_map(edges, "Just Resize", 128, 128)
    assert set(np.unique(big)) <= {0, 255}
    column = big[:, 64, 0]
    assert 1 <= (column == 255).sum() <= 2  # still about one pixel thick, not a 4-pixel band


def test_annotators_say_which_file_is_missing_and_where(tmp_path: Path) -> None:
    with pytest.raises(PreprocessorUnavailable, match=r"'ControlNetHED.pth' is missing: put it at .*hed/ControlNetHED"):
        detect("softedge_hed", square(), 64, 0, 0, tmp_path)
    with pytest.raises(PreprocessorUnavailable, match=r"folder .*midas/dpt-hybrid-midas is missing: put the files "
                                                      r"of Intel/dpt-hybrid-midas"):
        detect("depth_midas", square(), 64, 0, 0, tmp_path)
    (tmp_path / "midas" / "dpt-hybrid-midas").mkdir(parents=True)  # an empty folder is still missing its files
    with pytest.raises(PreprocessorUnavailable, match="config.json and model.safetensors"):
        detect("depth", square(), 64, 0, 0, tmp_path)
    with pytest.raises(PreprocessorUnavailable, match="'body_pose_model.pth' is missing"):
        detect("openpose", square(), 64, 0, 0, tmp_path)
    (tmp_path / "openpose").mkdir()
    (tmp_path / "openpose" / "body_pose_model.pth").write_bytes(b"")
    with pytest.raises(PreprocessorUnavailable, match="not part of Atelier yet.*module 'none'"):
        detect("openpose", square(), 64, 0, 0, tmp_path)
    with pytest.raises(ValueError, match="unknown ControlNet module 'sketchy'"):
        detect("sketchy", square(), 64, 0, 0)


def test_hed_runs_from_the_annotators_folder(tmp_path: Path) -> None:
    import torch

    from pipelines.control_preprocessors import _hed_network

    torch.manual_seed(0)
    net = _hed_network()
    (tmp_path / "hed").mkdir()
    torch.save(net.state_dict(), tmp_path / HED_FILE)  # the layout of lllyasviel's ControlNetHED.pth
    soft = detect("softedge_hed", square((48, 40)), 64, 0, 0, tmp_path)
    assert soft.shape == (64, 77, 3)  # 48×40 scaled to a short side of 64
    assert soft.std() > 0
    safe = detect("softedge_hedsafe", square((48, 40)), 64, 0, 0, tmp_path)
    assert len(np.unique(safe)) <= 3  # safe_step quantises to thirds (0, 127, 255)
    scribble = detect("scribble_hed", square((48, 40)), 64, 0, 0, tmp_path)
    assert set(np.unique(scribble)) <= {0, 255}


def tiny_dpt(folder: Path) -> object:
    """A tiny random-weight DPT-Hybrid (a BiT backbone under a ViT, as Intel/dpt-hybrid-midas) in transformers'
    format, built offline."""
    import torch
    from transformers import BitConfig, DPTConfig, DPTForDepthEstimation

    torch.manual_seed(0)
    bit = BitConfig(global_padding="same", layer_type="bottleneck", depths=[1, 1, 1], hidden_sizes=[16, 32, 64],
                    out_features=["stage1", "stage2", "stage3"], embedding_dynamic_padding=True, embedding_size=8,
                    num_groups=4)
    config = DPTConfig(is_hybrid=True, backbone_config=bit, backbone_featmap_shape=[1, 64, 4, 4], hidden_size=32,
                       num_hidden_layers=4, num_attention_heads=2, intermediate_size=37, image_size=64,
                       patch_size=16, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[16, 32, 32, 32],
                       reassemble_factors=[1, 1, 1, 0.5], fusion_hidden_size=16, readout_type="project")
    model = DPTForDepthEstimation(config).eval()
    model.save_pretrained(folder)
    return model


def test_depth_midas_runs_dpt_from_the_annotators_folder(tmp_path: Path) -> None:
    import cv2
    import torch

    model = tiny_dpt(tmp_path / "midas" / "dpt-hybrid-midas")
    picture = np.asarray(Image.new("RGB", (96, 64), (30, 60, 90))).copy()
    picture[16:48, 16:80] = (220, 200, 40)
    depth = detect("depth_midas", picture, 128, 0, 0, tmp_path)
    assert depth.shape == (128, 192, 3)  # the short side at the processor resolution, as the extension's maps
    assert (int(depth.min()), int(depth.max())) == (0, 255)  # normalised, as apply_midas does
    assert np.array_equal(depth[..., 0], depth[..., 2])  # grey
    # The network's own answer at its input size, brought to the map's size and normalised: DPT's depth.
    resized = cv2.resize(cv2.resize(picture, (192, 128), interpolation=cv2.INTER_CUBIC), (64, 64),
                         interpolation=cv2.INTER_AREA)
    pixels = torch.from_numpy(resized.copy()).float().permute(2, 0, 1)[None] / 127.5 - 1.0
    with torch.no_grad():
        own = model(pixel_values=pixels).predicted_depth  # type: ignore[operator]
    own = torch.nn.functional.interpolate(own[:, None], size=(128, 192), mode="bicubic")[0, 0]
    own = (own - own.min()) / (own - own.min()).max()
    assert np.abs(depth[..., 0].astype(int) - (own * 255).clip(0, 255).numpy().astype(np.uint8)).max() <= 1
    assert np.array_equal(detect("depth", picture, 128, 0, 0, tmp_path), depth)  # by its internal name too
