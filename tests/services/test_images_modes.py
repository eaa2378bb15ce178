"""img2img, inpaint and hires fix below the UI: cache keys, history rows, kept input images, PNG parameters in
AUTOMATIC1111's words, per-user isolation. The fake backend stands in for the model (tests/pipelines has pixels)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import save_file

from contracts import ImageLimits, ImageRequest, InvalidRequest
from pipelines import checkpoints, loras
from services import images as images_module
from services.container import Services
from services.history import HistoryService
from services.images import ImageService, JobSnapshot
from services.model_slots import ModelSlot
from services.uploads import UploadLimits
from storage.db import open_database
from storage.files import read_parameters
from storage.models import ImageFile, ImageJob
from tests.services.fakes import FakeImageBackend

BASE = {"prompt": "a lighthouse", "width": 64, "height": 64, "steps": 4, "seed": 5, "sampler": "Euler a"}


def picture(seed: int, size: tuple[int, int] = (64, 64)) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def left_half_mask(size: tuple[int, int] = (64, 64)) -> Image.Image:
    mask = Image.new("L", size, 0)
    mask.paste(255, (0, 0, size[0] // 2, size[1]))
    return mask


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


class StubCatalog:
    """What the image service asks services/catalog.py, over the same pipelines functions: names to check (here
    every name exists, except "missing"), upscalers, and A1111's hashes of a checkpoint and of a prompt's LoRAs."""

    def __init__(self, root: Path) -> None:
        self.loras_dir = root / "loras"
        self.models_dir = root / "models"
        self.loras_dir.mkdir(parents=True)
        self.models_dir.mkdir(parents=True)

    def upscalers(self) -> list[str]:
        return ["4x-UltraSharp"]

    def field_errors(self, prompt: str = "", model: str = "", vae: str = "") -> dict[str, str]:
        return {"model": "model 'missing' is not available; choose one of: dream"} if model == "missing" else {}

    def model_hash(self, name: str) -> str:
        return checkpoints.model_hash(self.models_dir / name)

    def lora_hashes(self, prompt: str) -> str:
        return loras.lora_hashes(prompt, self.loras_dir)


@pytest.fixture
def backend() -> FakeImageBackend:
    return FakeImageBackend()


@pytest.fixture
def service(tmp_path: Path, backend: FakeImageBackend) -> ImageService:
    open_database(tmp_path / "atelier.db")
    slot = ModelSlot("image", backend, lambda b, report: None, model="fake-sd", backend_name="fake")
    return ImageService(slot, tmp_path / "images", ImageLimits(), cache=images_module.ResultCache(enabled=True),
                       catalog=StubCatalog(tmp_path))


def run(service: ImageService, user: str = "", **params: Any) -> JobSnapshot:
    snap = service.run(service.validate(**(BASE | params)), user)
    assert snap.status == "done", snap.message
    return snap


def parameters_of(snap: JobSnapshot) -> str:
    text = read_parameters(snap.files[0])
    assert text is not None
    return text


# --- cache ------------------------------------------------------------------------------------------------------
def test_same_inputs_hit_the_cache_and_other_images_or_strength_do_not(service: ImageService,
                                                                        backend: FakeImageBackend) -> None:
    first = run(service, mode="img2img", init_image=picture(1))
    # The same picture again, as a new object decoded from the upload's bytes: a hit, no pipeline call.
    again = run(service, mode="img2img", init_image=png(picture(1)))
    assert (first.info["cached"], again.info["cached"]) == (False, True)
    assert len(backend.requests) == 1
    assert again.files[0].read_bytes() == first.files[0].read_bytes()
    assert run(service, mode="img2img", init_image=picture(2)).info["cached"] is False
    assert run(service, mode="img2img", init_image=picture(1), denoising_strength=0.5).info["cached"] is False
    assert len(backend.requests) == 3


def test_the_mask_is_part_of_the_key(service: ImageService, backend: FakeImageBackend) -> None:
    run(service, mode="inpaint", init_image=picture(1), mask=left_half_mask())
    other = left_half_mask().transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    assert run(service, mode="inpaint", init_image=picture(1), mask=other).info["cached"] is False
    assert run(service, mode="inpaint", init_image=picture(1), mask=left_half_mask()).info["cached"] is True
    assert len(backend.requests) == 2


@pytest.mark.parametrize("change", [
    {"mode": "img2img", "mask": None}, {"mask": left_half_mask().rotate(90)}, {"init_image": picture(2)},
    {"resize_mode": 1}, {"denoising_strength": 0.3},
    {"mask_blur": 9}, {"inpainting_fill": 0}, {"inpaint_full_res": True}, {"inpaint_full_res_padding": 8},
    {"inpainting_mask_invert": 1}, {"model": "dream.safetensors"}, {"vae": "clear-vae"},
])
def test_every_img2img_and_inpaint_field_changes_the_key(backend: FakeImageBackend, change: dict[str, Any]) -> None:
    base = ImageRequest(**(BASE | {"mode": "inpaint", "init_image": picture(1), "mask": left_half_mask()}))
    changed = base.model_copy(update=change)
    assert (ImageService.cache_key(base, backend, base.image_digests())
            != ImageService.cache_key(changed, backend, changed.image_digests()))


@pytest.mark.parametrize("change", [{"enable_hr": False}, {"hr_scale": 1.5}, {"hr_upscaler": "Lanczos"},
                                    {"hr_second_pass_steps": 3}, {"denoising_strength": 0.2}])
def test_every_hires_field_changes_the_key(backend: FakeImageBackend, change: dict[str, Any]) -> None:
    base = ImageRequest(**(BASE | {"enable_hr": True}))
    changed = base.model_copy(update=change)
    assert ImageService.cache_key(base, backend, base.image_digests()) != ImageService.cache_key(
        changed, backend, changed.image_digests())


# --- history and kept inputs ------------------------------------------------------------------------------------
def test_history_keeps_the_settings_and_the_input_images(service: ImageService, tmp_path: Path) -> None:
    init, mask = picture(3, (80, 48)), left_half_mask((80, 48))
    snap = run(service, mode="inpaint", init_image=init, mask=mask, denoising_strength=0.6, mask_blur=2,
               inpainting_fill=2, inpaint_full_res=True, inpaint_full_res_padding=12, inpainting_mask_invert=1,
               resize_mode=1, vae="clear-vae")
    job = ImageJob.get_by_id(snap.info["job_id"])
    sha = hashlib.sha256(png(init)).hexdigest()
    assert (job.mode, job.init_image_sha, job.mask_sha) == ("inpaint", sha, hashlib.sha256(png(mask)).hexdigest())
    settings = HistoryService(tmp_path / "images").get_job(job.id)
    assert settings is not None
    expected = {"mode": "inpaint", "denoising_strength": 0.6, "mask_blur": 2, "inpainting_fill": 2,
                "inpaint_full_res": True, "inpaint_full_res_padding": 12, "inpainting_mask_invert": 1,
                "resize_mode": 1, "vae": "clear-vae", "checkpoint": "", "enable_hr": False,
                "init_image": f"inputs/{sha}.png", "mask": f"inputs/{job.mask_sha}.png"}
    assert {k: settings[k] for k in expected} == expected
    assert snap.info["init_image"] == f"inputs/{sha}.png"  # the watcher can reopen the job too
    # The inputs are files, pixel for pixel what was sent, so that the job can be reopened.
    kept_init = Image.open(tmp_path / "images" / settings["init_image"])
    kept_mask = Image.open(tmp_path / "images" / settings["mask"])
    assert np.array_equal(np.asarray(kept_init), np.asarray(init))
    assert (kept_mask.mode, np.array_equal(np.asarray(kept_mask), np.asarray(mask))) == ("L", True)
    # A txt2img job keeps none.
    plain = ImageJob.get_by_id(run(service).info["job_id"])
    assert (plain.mode, plain.init_image_sha, plain.settings_dict()["init_image"]) == ("txt2img", "", "")


def test_inputs_that_cannot_be_stored_fail_the_job_with_a_message(service: ImageService, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  backend: FakeImageBackend) -> None:
    def full_disk(key: str, image: Image.Image, parameters: Any = None) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(service.store, "put_png", full_disk)
    snap = service.run(service.validate(**BASE, mode="img2img", init_image=picture(4)))
    assert snap.status == "failed"
    assert "could not save the input images" in snap.error
    assert ImageJob.get_by_id(snap.job_id).status == "failed"
    assert backend.requests == []  # nothing computed for a job that could not be recorded whole
    assert not (tmp_path / "images" / "inputs").exists() or not any((tmp_path / "images" / "inputs").iterdir())


# --- PNG parameters, one mode at a time ---------------------------------------------------------------------
def test_txt2img_parameters_have_no_mode_keys(service: ImageService) -> None:
    assert parameters_of(run(service, negative_prompt="fog")) == (
        "a lighthouse\nNegative prompt: fog\n"
        "Steps: 4, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 64x64, Model: fake-sd")


def test_img2img_parameters_carry_the_denoising_strength(service: ImageService) -> None:
    snap = run(service, mode="img2img", init_image=picture(1), denoising_strength=0.6, batch_count=2)
    assert parameters_of(snap) == (
        "a lighthouse\nSteps: 4, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 64x64, Model: fake-sd, "
        "Denoising strength: 0.6")
    assert "Seed: 6," in (read_parameters(snap.files[1]) or "")


def test_inpaint_parameters_as_a1111_writes_them(service: ImageService) -> None:
    snap = run(service, mode="inpaint", init_image=picture(1), mask=left_half_mask(), mask_blur=8,
               inpaint_full_res=True, inpaint_full_res_padding=48, inpainting_fill=0, inpainting_mask_invert=1)
    assert parameters_of(snap) == (
        "a lighthouse\nSteps: 4, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 64x64, Model: fake-sd, "
        "Denoising strength: 0.75, Mask mode: Inpaint not masked, Mask blur: 8, Inpaint area: Only masked, "
        "Masked area padding: 48, Masked content: fill")
    # A1111's defaults stay unwritten: the original content, the whole picture, no blur, the masked part.
    plain = run(service, mode="inpaint", init_image=picture(1), mask=left_half_mask(), mask_blur=0)
    assert parameters_of(plain).endswith("Model: fake-sd, Denoising strength: 0.75")


def test_hires_parameters_give_the_first_pass_size_and_the_upscale(service: ImageService) -> None:
    snap = run(service, enable_hr=True, hr_scale=1.5, hr_upscaler="Lanczos", hr_second_pass_steps=3,
               denoising_strength=0.4)
    assert Image.open(snap.files[0]).size == (96, 96)
    assert parameters_of(snap) == (
        "a lighthouse\nSteps: 4, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 64x64, Model: fake-sd, "
        "Denoising strength: 0.4, Hires upscale: 1.5, Hires steps: 3, Hires upscaler: Lanczos")
    # 0 second-pass steps (as many as the first pass) is A1111's unwritten default.
    same_steps = run(service, enable_hr=True)
    assert parameters_of(same_steps).endswith("Denoising strength: 0.75, Hires upscale: 2, Hires upscaler: Latent")


def test_lora_hashes_model_hash_and_vae_as_a1111_computes_them(service: ImageService, backend: FakeImageBackend,
                                                              tmp_path: Path) -> None:
    catalog = service.catalog
    assert isinstance(catalog, StubCatalog)
    save_file({"lora_up.weight": np.ones((2, 2), dtype=np.float32)}, str(catalog.loras_dir / "ink.safetensors"))
    checkpoint = catalog.models_dir / "dream.safetensors"
    checkpoint.write_bytes(b"not really weights, but hashed all the same")
    req = service.validate(**(BASE | {"prompt": "a lighthouse <lora:ink:0.6>", "model": "dream.safetensors",
                                      "vae": "vae-ft-mse.safetensors"}))
    params = service._parameters(req, backend)
    lora = (catalog.loras_dir / "ink.safetensors").read_bytes()
    header = int.from_bytes(lora[:8], "little")
    addnet = hashlib.sha256(lora[8 + header:]).hexdigest()[:12]  # A1111 hashes a LoRA's tensors, not its header
    assert params.lora_hashes == f"ink: {addnet}"
    assert params.model_hash == hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:10]
    assert params.to_text().endswith(
        f"Size: 64x64, Model hash: {params.model_hash}, Model: fake-sd, VAE: vae-ft-mse.safetensors, "
        f'Lora hashes: "ink: {addnet}"')
    # A backend that knows the hash of what it loaded is believed first.
    backend.model_hash = "abcdef0123"  # type: ignore[attr-defined]
    assert service._parameters(req, backend).model_hash == "abcdef0123"


# --- per-user isolation -----------------------------------------------------------------------------------------
def test_inputs_and_their_cache_entries_belong_to_their_users(service: ImageService, tmp_path: Path,
                                                              backend: FakeImageBackend) -> None:
    history = HistoryService(tmp_path / "images")
    init = picture(7)
    sha = hashlib.sha256(png(init)).hexdigest()
    ann = run(service, "ann", mode="img2img", init_image=init)
    assert history.input_key(sha, "ann") == f"inputs/{sha}.png"
    assert (tmp_path / "images" / "inputs" / f"{sha}.png").is_file()
    assert history.input_key(sha, None) is not None  # an admin sees every user's
    assert history.input_key(sha, "bob") is None  # bob never sent it
    assert history.input_key("../atelier", "ann") is None
    # Bob sends the same picture and settings: his own job, computed for him, not ann's cached result.
    bob = run(service, "bob", mode="img2img", init_image=init)
    assert (ann.info["cached"], bob.info["cached"]) == (False, False)
    assert len(backend.requests) == 2
    assert history.input_key(sha, "bob") is not None
    assert [j["job_id"] for j in history.list_jobs("bob")["jobs"]] == [bob.job_id]
    # Deleting keeps an input another job still uses, and removes it with the last one.
    assert history.delete_job(ann.job_id, "ann")
    assert history.input_key(sha, "ann") is None
    assert history.input_key(sha, "bob") is not None
    assert history.delete_job(bob.job_id, "bob")
    assert not (tmp_path / "images" / "inputs" / f"{sha}.png").exists()
    assert ImageFile.select().count() == 0


# --- validation of what the UI and API send ----------------------------------------------------------------------
def test_uploaded_bytes_are_decoded_and_bad_ones_refused_on_their_field(service: ImageService) -> None:
    req = service.validate(**BASE, mode="inpaint", init_image=png(picture(1)), mask=png(left_half_mask()))
    assert (req.init_image is not None and req.init_image.mode, req.mask is not None and req.mask.mode) == ("RGB", "L")
    with pytest.raises(InvalidRequest) as caught:
        service.validate(**(BASE | {"steps": 0}), mode="inpaint", init_image=b"GIF89a...", mask=png(left_half_mask()))
    assert caught.value.errors["init_image"].startswith("init_image: the file is a GIF image")
    assert "steps" in caught.value.errors  # the other fields are still checked
    # Names come from the catalog, and an upscaler model from its folder is a valid hires upscaler.
    assert service.field_errors(**BASE, model="missing")["model"].startswith("model 'missing' is not available")
    assert service.field_errors(**BASE, enable_hr=True, hr_upscaler="4x-UltraSharp") == {}
    service.upload_limits = UploadLimits(max_pixels=64 * 64 - 1)
    errors = service.field_errors(**BASE, mode="img2img", init_image=picture(1))
    assert "4,096 pixels" in errors["init_image"]


def test_uploaded_files_are_read_once_by_the_service_and_a_plain_string_is_no_file(service: ImageService,
                                                                                 tmp_path: Path) -> None:
    # The UI hands over the paths of Gradio's uploads: the service reads and decodes them, once.
    (tmp_path / "init.png").write_bytes(png(picture(2)))
    (tmp_path / "mask.png").write_bytes(png(left_half_mask()))
    (tmp_path / "fake.png").write_bytes(b"%PDF-1.7 not an image")
    req, errors = service.check(**BASE, mode="inpaint", init_image=tmp_path / "init.png", mask=tmp_path / "mask.png")
    assert errors == {}
    assert req is not None
    assert (req.init_image.mode, req.init_image.size, req.mask.mode) == ("RGB", (64, 64), "L")
    assert np.array_equal(np.asarray(req.init_image), np.asarray(picture(2).convert("RGB")))
    req, errors = service.check(**BASE, mode="img2img", init_image=tmp_path / "fake.png")
    assert req is None
    assert errors["init_image"] == "init_image: the file is a PDF document; send a PNG, JPEG or WebP image."
    # A string is text, not a file to open: only a caller's Path (Gradio's upload folder) is read from disk.
    assert "init_image" in service.field_errors(**BASE, mode="img2img", init_image=str(tmp_path / "init.png"))


def test_a_remote_backend_gets_its_own_names_unchecked(service: ImageService) -> None:
    # An AUTOMATIC1111 WebUI has checkpoints, VAEs, LoRAs and upscalers Atelier's folders do not: they pass to it.
    names = {"model": "missing", "vae": "vae-ft-mse-840000-ema-pruned.ckpt",
             "prompt": "a lighthouse <lora:webui_only:0.8>", "enable_hr": True, "hr_upscaler": "R-ESRGAN 4x+"}
    assert set(service.field_errors(**(BASE | names))) == {"model", "hr_upscaler"}  # the stub knows every other
    service.remote_names = True
    assert service.field_errors(**(BASE | names)) == {}
    req = service.validate(**(BASE | names))
    assert service._parameters(req, service.slot.backend).lora_hashes is None  # no local file to hash


# A weight that ends the job "done" with a black image (stored and cached) is refused before any job, on every path:
# the prompt, the negative prompt, A1111's te:unet form and its <lyco:…> alias, with local or remote (A1111) names.
BAD_LORA_PROMPTS = [{"prompt": "a fox <lora:webui_only:nan>"}, {"prompt": "a fox <lora:webui_only:0.5:inf>"},
                    {"prompt": "a fox <lyco:webui_only:1e308>"}, {"negative_prompt": "<lora:blur:-20>"}]


@pytest.mark.parametrize("remote", [False, True])
@pytest.mark.parametrize("change", BAD_LORA_PROMPTS)
def test_a_bad_lora_weight_is_refused_before_any_job(service: ImageService, backend: FakeImageBackend,
                                                     remote: bool, change: dict[str, str]) -> None:
    service.remote_names = remote
    with pytest.raises(InvalidRequest) as caught:
        service.validate(**(BASE | change))
    assert list(caught.value.errors) == list(change)
    assert "between -10 and 10" in caught.value.errors[next(iter(change))]
    assert backend.requests == []
    assert ImageJob.select().count() == 0


def test_settings_read_from_a_png_with_a_bad_lora_weight_are_refused_when_reused(service: ImageService) -> None:
    from services import pnginfo

    text = ("a fox <lora:style:nan>\nNegative prompt: blurry <lora:blur:inf>\n"
            "Steps: 4, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 64x64")
    info = pnginfo.read(png_with_parameters(text))
    reused = {name: info[name] for name in ("prompt", "negative_prompt", "steps", "cfg_scale", "seed", "width",
                                            "height")}
    with pytest.raises(InvalidRequest) as caught:
        service.validate(**reused, sampler=info["sampler_name"])
    assert set(caught.value.errors) == {"prompt", "negative_prompt"}


def png_with_parameters(text: str) -> bytes:
    from PIL import PngImagePlugin

    meta = PngImagePlugin.PngInfo()
    meta.add_text("parameters", text)
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, format="PNG", pnginfo=meta)
    return out.getvalue()


# --- the tiny diffusers model, end to end -------------------------------------------------------------------------
def test_tiny_model_inpaint_job_is_stored_whole_and_then_cached(services: Services) -> None:
    from services.images import run_and_collect

    params = BASE | {"mode": "inpaint", "init_image": picture(9), "mask": left_half_mask(), "steps": 2,
                     "denoising_strength": 0.5}
    first = run_and_collect(services.images, services.images.validate(**params))
    assert first.status == "done", first.message
    text = parameters_of(first)
    assert "Denoising strength: 0.5, Mask blur: 4" in text
    job = ImageJob.get_by_id(first.info["job_id"])
    assert (services.settings.images_dir / job.settings_dict()["init_image"]).is_file()
    again = run_and_collect(services.images, services.images.validate(**params))
    assert (first.info["cached"], again.info["cached"]) == (False, True)
    assert again.files[0].read_bytes() == first.files[0].read_bytes()
