"""img2img, inpaint, hires fix, PNG Info and the model lists through gradio_client against a live tiny server: each
mode end to end, the new parameters optional, bad uploads refused with a clear message, the examples runnable."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import ValidationError
from PIL import Image, ImageDraw

from contracts import choices
from storage.files import parse_parameters, read_parameters
from tests.server import serve
from tests.services.conftest import tiny_settings

ROOT = Path(__file__).resolve().parents[1]
PARAMS: dict[str, Any] = {"prompt": "a lighthouse at dusk", "negative_prompt": "blurry", "width": 64, "height": 64,
                          "steps": 3, "cfg_scale": 7.0, "seed": 42, "sampler": "Euler a", "batch_count": 1}
NEW_TXT2IMG = ["enable_hr", "hr_scale", "hr_upscaler", "hr_second_pass_steps", "denoising_strength", "model", "vae"]
IMG2IMG = ["init_image", "denoising_strength", "resize_mode"]
A1111_DEFAULTS = {"enable_hr": False, "hr_scale": 2.0, "hr_upscaler": "Latent", "hr_second_pass_steps": 0,
                  "denoising_strength": 0.75, "model": "", "vae": "", "resize_mode": 0, "mask_blur": 4,
                  "inpainting_fill": 1, "inpaint_full_res": False, "inpaint_full_res_padding": 32,
                  "inpainting_mask_invert": 0, "controlnet": []}
INPAINT = ["mask", "mask_blur", "inpainting_fill", "inpaint_full_res", "inpaint_full_res_padding",
           "inpainting_mask_invert"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def server(data_dir: Path, tiny_sd_dir: Path) -> Iterator[str]:
    # No result cache: a job run twice must compute twice.
    settings = tiny_settings(data_dir, tiny_sd_dir, cache_enabled=False, limit_image_jobs="1000/minute",
                             limit_uploads="1000/minute", limit_reads="1000/minute")
    with serve(settings) as url:
        yield url


@pytest.fixture(scope="module")
def client(server: str) -> Client:
    return Client(server, verbose=False, download_files=False)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An init image (a gradient with a square, so that each part is told apart) and a mask of its left half."""
    folder = tmp_path_factory.mktemp("pictures")
    x = np.linspace(0, 255, 64, dtype=np.uint8)
    init = Image.fromarray(np.stack([np.tile(x, (64, 1)), np.tile(x[:, None], (1, 64)),
                                     np.full((64, 64), 90, np.uint8)], axis=-1))
    ImageDraw.Draw(init).rectangle((40, 10, 55, 25), fill=(250, 20, 20))
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((0, 0, 31, 63), fill=255)
    paths = {"init": folder / "init.png", "mask": folder / "mask.png", "text": folder / "notes.png",
             "cut": folder / "cut.png"}
    init.save(paths["init"])
    mask.save(paths["mask"])
    paths["text"].write_text("this is not an image")
    data = paths["init"].read_bytes()
    paths["cut"].write_bytes(data[:len(data) // 2])  # a PNG cut off mid-way
    return paths


def run(client: Client, api_name: str, **params: Any) -> tuple[list[Any], dict[str, Any]]:
    """A job's final (gallery, info)."""
    *_, gallery, info = client.submit(**params, api_name=api_name).result(timeout=180)
    return gallery, info


def pixels(item: dict[str, Any]) -> np.ndarray:
    return np.asarray(Image.open(item["image"]["path"]).convert("RGB"))


def test_the_new_parameters_follow_todays_and_are_all_optional(client: Client) -> None:
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    expected = {"/generate_image": [*PARAMS, *NEW_TXT2IMG, "controlnet"],
                "/img2img": [*PARAMS, *IMG2IMG, "model", "vae", "controlnet"],
                "/inpaint": [*PARAMS, *IMG2IMG, *INPAINT, "model", "vae", "controlnet"]}
    for api, names in expected.items():
        parameters = endpoints[api]["parameters"]
        assert [p["parameter_name"] for p in parameters] == names, api
        required = {p["parameter_name"] for p in parameters if not p["parameter_has_default"]}
        # As today, the prompts have no default; every new parameter but the images has A1111's.
        assert required == {"prompt", "negative_prompt"} | ({"init_image", "mask"} & set(names)), api
        defaults = {p["parameter_name"]: p["parameter_default"] for p in parameters if p["parameter_has_default"]}
        assert {k: defaults[k] for k in names if k in A1111_DEFAULTS} == {
            k: v for k, v in A1111_DEFAULTS.items() if k in names}, api


def test_a_txt2img_script_of_today_still_works_positionally(client: Client) -> None:
    *_, gallery, info = client.predict(*PARAMS.values(), api_name="/generate_image")
    assert (info["width"], info["height"], info["seed"]) == (64, 64, 42)
    assert info["enable_hr"] is False
    assert pixels(gallery[0]).shape == (64, 64, 3)


def test_hires_fix_upscales_to_the_target_size_in_one_job(client: Client) -> None:
    gallery, info = run(client, "/generate_image", **PARAMS, enable_hr=True, hr_scale=2, hr_upscaler="Lanczos",
                        hr_second_pass_steps=2, denoising_strength=0.5)
    assert pixels(gallery[0]).shape == (128, 128, 3)
    stored = parse_parameters(read_parameters(Path(gallery[0]["image"]["path"])))
    assert stored["Hires upscale"] == "2"
    assert stored["Hires steps"] == "2"
    assert stored["Hires upscaler"] == "Lanczos"
    assert stored["Denoising strength"] == "0.5"
    assert info["enable_hr"] is True


def test_img2img_reworks_the_uploaded_image_with_the_same_pixels_for_the_same_seed(
        client: Client, pictures: dict[str, Path]) -> None:
    params = {**PARAMS, "width": 96, "height": 64, "init_image": handle_file(pictures["init"]),
              "denoising_strength": 0.6, "resize_mode": 1}
    gallery_a, info = run(client, "/img2img", **params)
    gallery_b, _ = run(client, "/img2img", **params)
    a, b = pixels(gallery_a[0]), pixels(gallery_b[0])
    assert a.shape == (64, 96, 3)
    assert np.array_equal(a, b)
    assert (info["mode"], info["denoising_strength"], info["resize_mode"]) == ("img2img", 0.6, 1)
    stored = parse_parameters(read_parameters(Path(gallery_a[0]["image"]["path"])))
    assert stored["Denoising strength"] == "0.6"


@pytest.mark.parametrize("full_res", [False, True], ids=["whole-picture", "only-masked"])
def test_inpaint_repaints_the_masked_half_and_gives_back_the_rest_untouched(
        client: Client, pictures: dict[str, Path], full_res: bool) -> None:
    gallery, info = run(client, "/inpaint", **PARAMS, init_image=handle_file(pictures["init"]),
                        mask=handle_file(pictures["mask"]), mask_blur=0, inpaint_full_res=full_res,
                        inpaint_full_res_padding=8, denoising_strength=1.0)
    out = pixels(gallery[0])
    original = np.asarray(Image.open(pictures["init"]).convert("RGB"))
    assert out.shape == original.shape
    assert np.array_equal(out[:, 32:], original[:, 32:])  # A1111 pastes the original over the unmasked part
    assert not np.array_equal(out[:, :32], original[:, :32])
    assert (info["mode"], info["inpaint_full_res"], info["mask_blur"]) == ("inpaint", full_res, 0)


def test_bad_uploads_and_missing_images_get_a_message_on_their_field(
        client: Client, pictures: dict[str, Path]) -> None:
    cases = [("/img2img", {"init_image": handle_file(pictures["text"])}, "init_image", "PNG, JPEG or WebP"),
             ("/img2img", {"init_image": handle_file(pictures["cut"])}, "init_image", "init_image"),
             ("/img2img", {"init_image": None}, "init_image", "init_image"),
             ("/inpaint", {"init_image": handle_file(pictures["init"]), "mask": None}, "mask", "mask"),
             ("/inpaint", {"init_image": handle_file(pictures["init"]), "mask": handle_file(pictures["text"])},
              "mask", "PNG, JPEG or WebP"),
             ("/inpaint", {"init_image": handle_file(pictures["init"]), "mask": handle_file(pictures["mask"]),
                           "inpainting_fill": 7}, "inpainting_fill", "0 \\(fill\\)"),
             ("/generate_image", {"enable_hr": "yes"}, "enable_hr", "true or false")]
    for api, values, field, says in cases:
        with pytest.raises(ValidationError) as refused:
            client.predict(**PARAMS, **values, api_name=api)
        lines = str(refused.value).splitlines()
        assert lines[0] == "1 parameter(s) failed validation:", (api, values, lines)
        assert lines[1].startswith(f"- {field}: "), (api, values, lines)
        assert re.search(says, lines[1]), lines[1]


def test_png_info_reads_back_a_generated_png(client: Client) -> None:
    gallery, info = run(client, "/generate_image", **{**PARAMS, "seed": 777, "prompt": "a (red:1.2) fox"})
    read = client.predict(image=handle_file(gallery[0]["image"]["path"]), api_name="/png_info")
    assert read["prompt"] == "a (red:1.2) fox"
    assert read["negative_prompt"] == "blurry"
    assert (read["seed"], read["steps"], read["width"], read["height"]) == (777, 3, 64, 64)
    assert read["sampler_name"] == "Euler a"
    assert read["cfg_scale"] == 7.0
    assert read["parameters"].startswith("a (red:1.2) fox\nNegative prompt: blurry\nSteps: 3, ")
    assert info["job_id"]


def test_png_info_of_a_file_without_settings_or_not_a_png_says_so(client: Client, pictures: dict[str, Path]) -> None:
    with pytest.raises(Exception, match="image"):
        client.predict(image=handle_file(pictures["text"]), api_name="/png_info")
    with pytest.raises(ValidationError, match="image must be an uploaded image file"):
        client.predict(image=None, api_name="/png_info")


def test_png_info_refuses_a_huge_text_chunk_and_a_cut_off_png_with_short_messages(client: Client,
                                                                                   tmp_path: Path) -> None:
    from PIL import PngImagePlugin

    meta = PngImagePlugin.PngInfo()
    meta.add_text("parameters", "x" * (10 * 1024 * 1024))  # 10 MB of text came back as 21 MB of JSON
    huge = tmp_path / "huge.png"
    Image.new("RGB", (8, 8)).save(huge, pnginfo=meta)
    with pytest.raises(Exception, match="over 64 KiB, the most PNG Info reads") as caught:
        client.predict(image=handle_file(huge), api_name="/png_info")
    assert len(str(caught.value)) < 300
    meta = PngImagePlugin.PngInfo()
    meta.add_text("parameters", "a fox\nSteps: 3, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 64x64")
    whole = tmp_path / "whole.png"
    Image.effect_noise((64, 64), 50).save(whole, pnginfo=meta)
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole.read_bytes()[:-30])
    with pytest.raises(Exception, match="the PNG is cut off"):
        client.predict(image=handle_file(cut), api_name="/png_info")


def test_models_and_loras_list_the_folders(client: Client, data_dir: Path) -> None:
    (data_dir / "loras").mkdir(exist_ok=True)
    (data_dir / "loras" / "paper-cut.safetensors").write_bytes(b"")
    models = client.predict(api_name="/models")
    assert set(models) == {"models", "vaes", "upscalers", "controlnets", "module_list", "module_detail", "families"}
    assert {"Latent", "Lanczos"} <= set(models["upscalers"])  # the built-in ones, by A1111's names
    assert "paper-cut" in client.predict(api_name="/loras")["loras"]


def test_choices_are_the_contracts_lists_with_the_servers_upscalers(client: Client, data_dir: Path) -> None:
    (data_dir / "upscalers").mkdir(exist_ok=True)
    (data_dir / "upscalers" / "4x-Sharp.pth").write_bytes(b"")
    answer = client.predict(api_name="/choices")
    # What the React client offers and starts from: no copy of its own.
    assert answer == {**choices(["4x-Sharp"]), "defaults": {"steps": 8, "cfg_scale": 7.0, "width": 256, "height": 256,
                                                            "sampler": "Euler a"}}
    assert answer["samplers"][0] == "Euler a"
    assert {"value": 1, "label": "Crop and resize"} in answer["resize_modes"]
    assert answer["upscalers"][-1] == "4x-Sharp"
    assert answer["upscalers"] == client.predict(api_name="/models")["upscalers"]


def test_the_examples_run_against_the_server(server: str, pictures: dict[str, Path], tmp_path: Path) -> None:
    def example(name: str, *args: str) -> str:
        done = subprocess.run([sys.executable, str(ROOT / "examples" / name), *args, "--url", server],
                              capture_output=True, text=True, timeout=300, check=True, cwd=tmp_path)
        return done.stdout

    out = example("img2img.py", str(pictures["init"]), "--width", "64", "--height", "64", "--steps", "2",
                  "--seed", "5", "--out", "rework.png")
    assert "(img2img): seed 5, 64x64, denoising strength 0.75" in out
    out = example("img2img.py", str(pictures["init"]), "--mask", str(pictures["mask"]), "--width", "64",
                  "--height", "64", "--steps", "2", "--out", "repaint.png")
    assert "(inpaint)" in out
    assert "saved repaint.png" in out
    out = example("generate_image.py", "--width", "64", "--height", "64", "--steps", "2", "--seed", "3",
                  "--enable-hr", "--hr-scale", "1.5", "--out", "hires.png")
    assert "seed 3, 64x64" in out  # the base size, as A1111 records it
    assert Image.open(tmp_path / "hires.png").size == (96, 96)
    info = json.loads(example("png_info.py", str(tmp_path / "hires.png")))
    assert info["seed"] == 3
    assert "Hires upscale: 1.5" in info["parameters"]
    listed = example("models.py")
    assert "hires upscalers (hr_upscaler=...): Latent, " in listed
    assert "LoRAs (<lora:name:weight> in the prompt): " in listed


def test_a_file_the_client_did_not_upload_is_never_read(server: str, pictures: dict[str, Path]) -> None:
    """A raw request naming a file on the server (another user's image, say) is refused before Gradio copies it."""
    import httpx

    config = httpx.get(server + "config", timeout=10).json()
    fn_index = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "img2img")
    info = httpx.get(server + "gradio_api/info", timeout=10).json()["named_endpoints"]["/img2img"]
    values = {p["parameter_name"]: p.get("parameter_default") for p in info["parameters"]}
    for named in ({"path": str(pictures["init"]), "meta": {"_type": "gradio.FileData"}},
                  {"path": str(pictures["init"])}):
        join = {"data": list({**values, **PARAMS, "init_image": named}.values()), "fn_index": fn_index,
                "session_hash": "not-uploaded"}
        call = {**PARAMS, "init_image": named}
        for route, body in (("gradio_api/queue/join", join), ("gradio_api/call/v2/img2img", call),
                            ("gradio_api/call/img2img", {"data": join["data"]})):
            answer = httpx.post(server + route, json=body, timeout=10)
            assert answer.status_code == 422, (route, answer.text)
            assert answer.json()["detail"] == ("A file in the request was not uploaded to this server: upload it "
                                               "first (in gradio_client, pass handle_file(path)).")


def test_a_raw_call_with_todays_values_only_still_runs(server: str) -> None:
    """A script that posts /generate_image's nine values of today (curl, its own HTTP client) is completed with the
    new parameters' defaults instead of being refused for too few values."""
    import httpx

    config = httpx.get(server + "config", timeout=10).json()
    fn_index = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "generate_image")
    today = list({**PARAMS, "steps": 1}.values())
    joined = httpx.post(server + "gradio_api/queue/join", timeout=30,
                        json={"data": today, "fn_index": fn_index, "session_hash": "todays-script"})
    assert joined.status_code == 200, joined.text
    called = httpx.post(server + "gradio_api/call/generate_image", json={"data": today}, timeout=30)
    assert called.status_code == 200, called.text
    with httpx.stream("GET", server + f"gradio_api/call/generate_image/{called.json()['event_id']}",
                      timeout=120) as stream:
        events = [line for line in stream.iter_lines() if line.startswith("event:")]
    assert events[-1] == "event: complete", events
