"""The AUTOMATIC1111 backend against a stand-in A1111 API served over HTTP on loopback: request fields,
images and seeds, progress and previews, a Stop that interrupts only our own job, and every failure."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from contracts import ImageRequest, InvalidRequest
from pipelines.a1111_backend import A1111Backend, RemoteImageError, decode_image
from pipelines.image_base import GeneratedImage, JobCancelled, StepUpdate, create_image_backend, image_backend_names
from pipelines.loading import ModelUnavailable
from tests.server import free_port
from tests.standins.a1111_server import IMG2IMG_FIELDS, TXT2IMG_FIELDS, Behaviour, StandinA1111, seed_color
from tests.standins.serving import serve_asgi, wait_for

AUTH = ("atelier", "s3cret")


@pytest.fixture(scope="module")
def standin() -> Iterator[tuple[StandinA1111, str]]:
    """One stand-in server per module; each test resets its behaviour."""
    server = StandinA1111(auth=AUTH)
    with serve_asgi(server.app()) as url:
        yield server, url


@pytest.fixture
def server(standin: tuple[StandinA1111, str]) -> StandinA1111:
    """The stand-in, with default behaviour and nothing recorded."""
    srv = standin[0]
    assert wait_for(lambda: not srv.busy), "a previous test left a job running"
    srv.behaviour = Behaviour()
    srv.auth = AUTH
    srv.requests.clear()
    srv.routes.clear()
    srv.interrupts.clear()
    return srv


@pytest.fixture
def url(standin: tuple[StandinA1111, str]) -> str:
    return standin[1]


@pytest.fixture
def backend(server: StandinA1111, url: str) -> Iterator[A1111Backend]:
    """A loaded backend that polls progress often, so short test jobs show their steps."""
    b = A1111Backend(url, auth=":".join(AUTH), timeout_s=5, poll_s=0.02)
    b.load(lambda phase: None)
    yield b
    b.unload()


def request(**overrides: object) -> ImageRequest:
    values: dict[str, object] = {"prompt": "a lighthouse at dusk", "width": 64, "height": 64, "steps": 6, "seed": 7}
    values.update(overrides)
    return ImageRequest(**values)  # type: ignore[arg-type]


def run(backend: A1111Backend, req: ImageRequest, stop: threading.Event | None = None,
        updates: list[StepUpdate] | None = None) -> list[GeneratedImage]:
    seeds = req.seeds(req.seed)
    return backend.generate(req, seeds, (updates if updates is not None else []).append, stop or threading.Event())


def in_thread(fn: object, *args: object) -> tuple[threading.Thread, dict[str, object]]:
    """Run fn(*args) in a thread; the result or the exception lands in the returned dict."""
    out: dict[str, object] = {}

    def target() -> None:
        try:
            out["result"] = fn(*args)  # type: ignore[operator]
        except BaseException as err:
            out["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out


# --- registry, settings and load --------------------------------------------------------------------------------


def test_the_backend_is_registered_and_built_from_settings(url: str) -> None:
    assert "a1111" in image_backend_names()
    backend = create_image_backend("a1111", url=url + "/", auth="a:b")
    assert isinstance(backend, A1111Backend)
    assert backend.url == url
    with pytest.raises(ValueError, match="user:pass"):
        create_image_backend("a1111", url=url, auth="no-colon")


def test_load_reads_the_checkpoint_and_describe_tells_url_model_notes(backend: A1111Backend, url: str) -> None:
    assert backend.model_name == "v1-5-pruned-emaonly.safetensors [6ce0161689]"
    assert backend.revision.startswith("6ce0161689")
    info = backend.describe()
    assert info["url"] == url
    assert info["model"] == backend.model_name
    assert any("interrupt is global" in note for note in info["notes"])
    backend.offload()  # nothing to free: the WebUI owns the model
    assert backend.model_name.startswith("v1-5")


def test_load_checks_an_expected_checkpoint(server: StandinA1111, url: str) -> None:
    A1111Backend(url, auth=":".join(AUTH), model="v1-5-pruned-emaonly").load(lambda p: None)
    with pytest.raises(ModelUnavailable, match="not 'sdxl_base'.*Switch the checkpoint"):
        A1111Backend(url, auth=":".join(AUTH), model="sdxl_base").load(lambda p: None)


@pytest.mark.parametrize(
    ("auth", "expected"),
    [(None, "ATELIER_A1111_AUTH"), ("atelier:wrong", "refused the credentials")],
)
def test_load_without_the_right_credentials_says_so(server: StandinA1111, url: str, auth: str | None,
                                                    expected: str) -> None:
    with pytest.raises(ModelUnavailable, match=expected):
        A1111Backend(url, auth=auth).load(lambda p: None)


def test_load_against_a_server_that_is_down_says_how_to_start_one() -> None:
    backend = A1111Backend(f"http://127.0.0.1:{free_port()}", timeout_s=2)
    with pytest.raises(ModelUnavailable, match=r"Cannot reach.*--api --nowebui"):
        backend.load(lambda p: None)


def test_load_against_a_server_without_the_api_says_to_start_it_with_api() -> None:
    from starlette.applications import Starlette

    with serve_asgi(Starlette()) as bare, pytest.raises(ModelUnavailable, match="start the WebUI with --api"):
        A1111Backend(bare).load(lambda p: None)


def test_load_against_a_slow_server_times_out_clearly(server: StandinA1111, url: str) -> None:
    server.behaviour.slow_s = 1.0
    with pytest.raises(ModelUnavailable, match=r"did not answer within 0.3 s"):
        A1111Backend(url, auth=":".join(AUTH), timeout_s=0.3).load(lambda p: None)


def test_load_against_a_failing_server_reports_its_error(server: StandinA1111, url: str) -> None:
    server.behaviour.options_status = 500
    with pytest.raises(ModelUnavailable, match=r"failed during the check \(500\).*options broke"):
        A1111Backend(url, auth=":".join(AUTH)).load(lambda p: None)


# --- generate ---------------------------------------------------------------------------------------------------


def test_txt2img_is_sent_with_a1111_field_names(backend: A1111Backend, server: StandinA1111) -> None:
    req = request(negative_prompt="fog", cfg_scale=5.5, sampler="DPM++ 2M Karras", batch_count=3, seed=100)
    run(backend, req)
    sent = server.requests[-1]
    assert set(sent) <= TXT2IMG_FIELDS
    assert {k: sent[k] for k in ("prompt", "negative_prompt", "steps", "cfg_scale", "width", "height", "seed",
                                 "sampler_name", "batch_size", "n_iter")} == {
        "prompt": "a lighthouse at dusk", "negative_prompt": "fog", "steps": 6, "cfg_scale": 5.5, "width": 64,
        "height": 64, "seed": 100, "sampler_name": "DPM++ 2M Karras", "batch_size": 1, "n_iter": 3}
    assert sent["save_images"] is False  # Atelier writes the files itself
    assert sent["force_task_id"].startswith("task(atelier-")


def test_images_are_decoded_with_the_seeds_from_info(backend: A1111Backend) -> None:
    images = run(backend, request(batch_count=3, seed=1000, width=72, height=48))
    assert [g.seed for g in images] == [1000, 1001, 1002]
    for generated in images:
        assert generated.image.size == (72, 48)
        assert generated.image.mode == "RGB"
        assert generated.image.getpixel((0, 0)) == seed_color(generated.seed)


def test_the_seeds_a1111_reports_win_over_the_ones_asked_for(backend: A1111Backend, server: StandinA1111) -> None:
    server.behaviour.own_seeds = True
    images = run(backend, request(batch_count=2, seed=5))
    assert [g.seed for g in images] != [5, 6]
    assert images[1].seed == images[0].seed + 1
    assert all(g.image.getpixel((0, 0)) == seed_color(g.seed) for g in images)


def test_a_grid_sent_anyway_is_dropped(backend: A1111Backend, server: StandinA1111) -> None:
    server.behaviour.force_grid = True
    images = run(backend, request(batch_count=2, seed=20))
    assert [g.seed for g in images] == [20, 21]
    assert all(g.image.getpixel((0, 0)) == seed_color(g.seed) for g in images)


def test_progress_and_live_previews_come_from_polling(backend: A1111Backend, server: StandinA1111) -> None:
    server.behaviour.step_delay_s = 0.03
    updates: list[StepUpdate] = []
    run(backend, request(steps=8, batch_count=2), updates=updates)
    assert server.progress_calls > 0
    steps = [u.step for u in updates]
    assert steps == sorted(steps)
    assert all(u.total == 16 for u in updates)
    assert updates[-1].step == 16
    assert {u.image_index for u in updates} == {0, 1}
    previews = [u.preview for u in updates if u.preview is not None]
    assert previews
    assert previews[0].size == (8, 8)


def test_steps_are_reported_without_live_previews(backend: A1111Backend, server: StandinA1111) -> None:
    server.behaviour.step_delay_s = 0.03
    server.behaviour.preview_every = 0
    updates: list[StepUpdate] = []
    run(backend, request(steps=6), updates=updates)
    assert len(updates) >= 2
    assert all(u.preview is None for u in updates)


def test_stop_interrupts_our_running_job(backend: A1111Backend, server: StandinA1111) -> None:
    server.behaviour.step_delay_s = 0.05
    stop = threading.Event()
    updates: list[StepUpdate] = []

    def on_step(update: StepUpdate) -> None:
        updates.append(update)
        if update.step >= 2:
            stop.set()

    req = request(steps=200)
    with pytest.raises(JobCancelled):
        backend.generate(req, req.seeds(7), on_step, stop)
    assert len(server.interrupts) == 1
    assert server.interrupts[0] == server.requests[-1]["force_task_id"]
    assert wait_for(lambda: not server.busy)  # the job ended long before its 200 steps


def test_stop_before_the_job_starts_sends_nothing(backend: A1111Backend, server: StandinA1111) -> None:
    stop = threading.Event()
    stop.set()
    with pytest.raises(JobCancelled):
        run(backend, request(), stop)
    assert server.requests == []
    assert server.interrupts == []


def test_stop_never_interrupts_another_clients_job(backend: A1111Backend, server: StandinA1111, url: str) -> None:
    server.behaviour.step_delay_s = 0.02
    foreign_body = {"prompt": "someone else's", "steps": 40, "width": 64, "height": 64, "force_task_id": "task(other)"}
    foreign, foreign_out = in_thread(
        lambda: httpx.post(f"{url}/sdapi/v1/txt2img", json=foreign_body, auth=AUTH, timeout=30))
    assert wait_for(lambda: server.busy)
    stop = threading.Event()
    ours, ours_out = in_thread(run, backend, request(steps=400), stop)
    assert wait_for(lambda: len(server.requests) == 2)
    stop.set()  # ours is queued behind the other client's job
    ours.join(10)
    assert isinstance(ours_out.get("error"), JobCancelled)
    foreign.join(30)
    response = foreign_out["result"]
    assert response.status_code == 200  # type: ignore[attr-defined]
    assert len(response.json()["images"]) == 1  # type: ignore[attr-defined]
    assert "task(other)" not in server.interrupts
    # Our job is interrupted as soon as it starts, so it does not run its 400 steps for nobody.
    ours_id = server.requests[-1]["force_task_id"]
    assert wait_for(lambda: ours_id in server.interrupts, timeout=10)
    assert wait_for(lambda: not server.busy, timeout=10)


def test_an_a1111_without_task_ids_still_reports_progress_and_stops(backend: A1111Backend,
                                                                    server: StandinA1111) -> None:
    server.behaviour.report_task_id = False  # before A1111 1.6
    server.behaviour.step_delay_s = 0.05
    stop = threading.Event()
    updates: list[StepUpdate] = []

    def on_step(update: StepUpdate) -> None:
        updates.append(update)
        stop.set()

    req = request(steps=200)
    with pytest.raises(JobCancelled):
        backend.generate(req, req.seeds(7), on_step, stop)
    assert updates
    assert wait_for(lambda: len(server.interrupts) == 1)


# --- img2img, inpaint, hires fix, checkpoint and VAE -------------------------------------------------------------


def gradient(width: int = 64, height: int = 64) -> Image.Image:
    """An init image whose every pixel differs from its neighbours', so a moved or resampled pixel shows."""
    image = Image.new("RGB", (width, height))
    image.putdata([(x * 4 % 256, y * 4 % 256, (x + y) % 256) for y in range(height) for x in range(width)])
    return image


def half_mask(width: int = 64, height: int = 64) -> Image.Image:
    """White (repaint) on the left half, black (keep) on the right."""
    mask = Image.new("L", (width, height), 0)
    mask.paste(255, (0, 0, width // 2, height))
    return mask


def test_txt2img_without_the_new_fields_sends_none_of_them(backend: A1111Backend, server: StandinA1111) -> None:
    run(backend, request())
    sent = server.requests[-1]
    assert server.routes == ["txt2img"]
    assert not {"enable_hr", "hr_scale", "denoising_strength", "override_settings", "init_images", "mask"} & set(sent)


def test_img2img_goes_to_the_img2img_route_with_its_fields(backend: A1111Backend, server: StandinA1111) -> None:
    init = gradient()
    images = run(backend, request(mode="img2img", init_image=init, denoising_strength=0.5, resize_mode=1, seed=9))
    sent = server.requests[-1]
    assert server.routes == ["img2img"]
    assert set(sent) <= IMG2IMG_FIELDS
    assert (sent["denoising_strength"], sent["resize_mode"], sent["seed"]) == (0.5, 1, 9)
    assert "mask" not in sent
    assert list(decode_image(sent["init_images"][0]).convert("RGB").getdata()) == list(init.getdata())
    expected = Image.blend(init, Image.new("RGB", init.size, seed_color(9)), 0.5)
    assert list(images[0].image.getdata()) == list(expected.getdata())


def test_controlnet_units_go_in_alwayson_scripts_with_the_extensions_names(backend: A1111Backend,
                                                                           server: StandinA1111) -> None:
    from contracts import ControlNetUnit

    picture = gradient()
    units = [ControlNetUnit(image=picture, module="canny", model="control_v11p_sd15_canny [d14c016b]", weight=0.8,
                            guidance_start=0.1, guidance_end=0.9, control_mode="My prompt is more important",
                            resize_mode="Resize and Fill", pixel_perfect=True, processor_res=384, threshold_a=50,
                            threshold_b=150),
             ControlNetUnit(image=picture, module="canny", model="control_v11p_sd15_canny [d14c016b]",
                            enabled=False),
             ControlNetUnit(module="depth", model="control_v11f1p_sd15_depth [cfd03158]")]
    run(backend, request(mode="img2img", init_image=picture, denoising_strength=0.5, controlnet=units))
    sent = server.requests[-1]
    assert server.routes == ["img2img"]
    args = sent["alwayson_scripts"]["ControlNet"]["args"]
    assert len(args) == 2  # the disabled unit is not sent
    image = args[0].pop("image")
    assert list(decode_image(image).convert("RGB").getdata()) == list(picture.getdata())
    assert args == [
        {"enabled": True, "module": "canny", "model": "control_v11p_sd15_canny [d14c016b]", "weight": 0.8,
         "guidance_start": 0.1, "guidance_end": 0.9, "control_mode": "My prompt is more important",
         "resize_mode": "Resize and Fill", "pixel_perfect": True, "processor_res": 384, "threshold_a": 50,
         "threshold_b": 150},
        # No picture: the extension takes the img2img picture, as Atelier's own units do.
        {"enabled": True, "module": "depth", "model": "control_v11f1p_sd15_depth [cfd03158]", "weight": 1.0,
         "guidance_start": 0.0, "guidance_end": 1.0, "control_mode": "Balanced", "resize_mode": "Crop and Resize",
         "pixel_perfect": False, "processor_res": -1, "threshold_a": -1, "threshold_b": -1}]
    run(backend, request())
    assert "alwayson_scripts" not in server.requests[-1]  # no units, no scripts


def test_the_refiner_goes_to_the_webui_in_its_own_fields(backend: A1111Backend, server: StandinA1111) -> None:
    run(backend, request(refiner_checkpoint="sd_xl_refiner_1.0 [7440042bbd]", refiner_switch_at=0.7))
    sent = server.requests[-1]
    assert (sent["refiner_checkpoint"], sent["refiner_switch_at"]) == ("sd_xl_refiner_1.0 [7440042bbd]", 0.7)
    run(backend, request())
    assert "refiner_checkpoint" not in server.requests[-1]


def test_the_webuis_controlnet_models_are_listed(backend: A1111Backend, server: StandinA1111) -> None:
    assert backend.controlnet_models() == list(server.controlnet_models)  # without the extension's "None"
    models, server.controlnet_models = server.controlnet_models, ()
    try:
        with pytest.raises(ModelUnavailable, match="install the sd-webui-controlnet extension"):
            backend.controlnet_models()
    finally:
        server.controlnet_models = models


def test_a_controlnet_model_the_webui_lacks_is_reported(backend: A1111Backend, server: StandinA1111) -> None:
    from contracts import ControlNetUnit

    unit = ControlNetUnit(image=gradient(), module="canny", model="control_nope [00000000]")
    with pytest.raises(RemoteImageError, match="model not found: control_nope"):
        run(backend, request(controlnet=[unit]))


@pytest.mark.parametrize("invert", [0, 1])
def test_inpaint_sends_the_mask_and_the_inpaint_fields(backend: A1111Backend, server: StandinA1111,
                                                       invert: int) -> None:
    init, mask = gradient(), half_mask()
    req = request(mode="inpaint", init_image=init, mask=mask, mask_blur=0, inpainting_fill=2, inpaint_full_res=True,
                  inpaint_full_res_padding=48, inpainting_mask_invert=invert, denoising_strength=1.0, seed=3)
    [generated] = run(backend, req)
    sent = server.requests[-1]
    assert server.routes == ["img2img"]
    assert set(sent) <= IMG2IMG_FIELDS
    assert {k: sent[k] for k in ("mask_blur", "inpainting_fill", "inpaint_full_res", "inpaint_full_res_padding",
                                 "inpainting_mask_invert", "denoising_strength")} == {
        "mask_blur": 0, "inpainting_fill": 2, "inpaint_full_res": True, "inpaint_full_res_padding": 48,
        "inpainting_mask_invert": invert, "denoising_strength": 1.0}
    assert list(decode_image(sent["mask"]).convert("L").getdata()) == list(mask.getdata())
    # The stand-in repaints where the (inverted) mask is white and keeps the init pixels elsewhere.
    repainted, kept = ((5, 30), (50, 30)) if not invert else ((50, 30), (5, 30))
    assert generated.image.getpixel(repainted) == seed_color(3)
    assert generated.image.getpixel(kept) == init.getpixel(kept)


def test_hires_fix_sends_its_fields_and_counts_both_passes(backend: A1111Backend, server: StandinA1111) -> None:
    server.behaviour.step_delay_s = 0.03
    updates: list[StepUpdate] = []
    req = request(enable_hr=True, hr_scale=1.5, hr_upscaler="Lanczos", hr_second_pass_steps=4, denoising_strength=0.4,
                  steps=6, batch_count=2, seed=50)
    images = run(backend, req, updates=updates)
    sent = server.requests[-1]
    assert server.routes == ["txt2img"]
    assert {k: sent[k] for k in ("enable_hr", "hr_scale", "hr_upscaler", "hr_second_pass_steps",
                                 "denoising_strength")} == {
        "enable_hr": True, "hr_scale": 1.5, "hr_upscaler": "Lanczos", "hr_second_pass_steps": 4,
        "denoising_strength": 0.4}
    assert [g.image.size for g in images] == [(96, 96), (96, 96)]
    assert [g.seed for g in images] == [50, 51]
    steps = [u.step for u in updates]
    assert steps == sorted(steps)
    assert all(u.total == 2 * (6 + 4) for u in updates)
    assert any(6 < u.step <= 10 for u in updates), "the first image's hires pass showed"
    assert updates[-1].step == 20


def test_stop_works_in_the_hires_pass(backend: A1111Backend, server: StandinA1111) -> None:
    server.behaviour.step_delay_s = 0.05
    stop = threading.Event()

    def on_step(update: StepUpdate) -> None:
        if update.step > 3:  # past the base pass's 3 steps: in the hires pass
            stop.set()

    req = request(enable_hr=True, steps=3, hr_second_pass_steps=200)
    with pytest.raises(JobCancelled):
        backend.generate(req, req.seeds(7), on_step, stop)
    assert server.interrupts == [server.requests[-1]["force_task_id"]]
    assert wait_for(lambda: not server.busy)


def test_an_unknown_hires_upscaler_is_reported(backend: A1111Backend) -> None:
    with pytest.raises(RemoteImageError, match=r"\(500\).*could not find upscaler named Made Up"):
        run(backend, request(enable_hr=True, hr_upscaler="Made Up"))


def test_model_and_vae_go_in_override_settings_for_one_job(backend: A1111Backend, server: StandinA1111) -> None:
    run(backend, request(model="sd-v1-5-inpainting.ckpt", vae="vae-ft-mse-840000-ema-pruned.safetensors"))
    assert server.requests[-1]["override_settings"] == {
        "sd_model_checkpoint": "sd-v1-5-inpainting.ckpt", "sd_vae": "vae-ft-mse-840000-ema-pruned.safetensors"}
    # The files name the checkpoint that made them, with A1111's short hash.
    assert (backend.model_name, backend.model_hash) == ("sd-v1-5-inpainting", "c6bbc15e32")
    run(backend, request())  # A1111 restored its own checkpoint after the job
    assert "override_settings" not in server.requests[-1]
    assert backend.model_name.startswith("v1-5-pruned-emaonly")
    assert backend.model_hash == "6ce0161689"


# --- failures during a job --------------------------------------------------------------------------------------


def test_a_server_error_becomes_a_clear_runtime_error(backend: A1111Backend, server: StandinA1111) -> None:
    server.behaviour.txt2img_status = 500
    with pytest.raises(RemoteImageError, match=r"failed during the job \(500\).*CUDA out of memory") as caught:
        run(backend, request())
    assert isinstance(caught.value, RuntimeError)


def test_a_malformed_answer_is_reported(backend: A1111Backend, server: StandinA1111) -> None:
    server.behaviour.txt2img_malformed = True
    with pytest.raises(RemoteImageError, match="not TextToImageResponse"):
        run(backend, request())


def test_an_unknown_sampler_is_reported(backend: A1111Backend, server: StandinA1111) -> None:
    req = request().model_copy(update={"sampler": "Made Up"})
    with pytest.raises(RemoteImageError, match=r"\(404\).*Sampler not found"):
        run(backend, req)


def test_credentials_revoked_after_load_are_reported(backend: A1111Backend, server: StandinA1111) -> None:
    server.auth = ("atelier", "rotated")
    with pytest.raises(RemoteImageError, match=r"refused the credentials during the job \(401\)"):
        run(backend, request())


def test_a_job_slower_than_its_timeout_is_reported(server: StandinA1111, url: str) -> None:
    server.behaviour.step_delay_s = 0.1
    backend = A1111Backend(url, auth=":".join(AUTH), timeout_s=2, job_timeout_s=0.3, poll_s=0.05)
    backend.load(lambda p: None)
    with pytest.raises(RemoteImageError, match="did not finish the job within 0.3 s"):
        run(backend, request(steps=30))
    httpx.post(f"{url}/sdapi/v1/interrupt", auth=AUTH)  # end the abandoned job now rather than in 3 s


def test_a_server_that_went_away_is_reported(server: StandinA1111, url: str) -> None:
    backend = A1111Backend(url, auth=":".join(AUTH), timeout_s=2)
    backend.load(lambda p: None)
    backend.http.url = f"http://127.0.0.1:{free_port()}"
    backend.unload()  # the next client is built for the new, dead address
    backend.model = "v1-5"
    with pytest.raises(RemoteImageError, match="cannot reach the AUTOMATIC1111 server"):
        run(backend, request())


# --- through the image service ----------------------------------------------------------------------------------


def test_the_service_writes_files_and_history_for_remote_jobs(server: StandinA1111, url: str,
                                                               tmp_path: Path) -> None:
    from services.container import build_services
    from services.images import run_and_collect
    from settings import Settings
    from storage.files import parse_parameters, read_parameters
    from storage.models import ImageJob

    settings = Settings(profile="tiny", data_dir=tmp_path / "data", warmup=False, image_backend="a1111",
                        a1111_url=url, a1111_auth=":".join(AUTH), a1111_poll_s=0.02)
    services = build_services(settings)
    assert not (settings.models_dir / "tiny-sd").exists()  # a remote backend builds no local model
    snap = run_and_collect(services.images, services.images.validate(prompt="a fox", width=64, height=64,
                                                                     steps=3, seed=42, batch_count=2))
    assert snap.status == "done", snap.message
    params = parse_parameters(read_parameters(snap.files[1]))
    assert params["Seed"] == "43"
    assert params["Model"].startswith("v1-5-pruned-emaonly")
    assert ImageJob.get_by_id(snap.info["job_id"]).status == "done"
    assert services.health()["models"]["image"]["url"] == url

    server.behaviour.txt2img_status = 500
    failed = run_and_collect(services.images, services.images.validate(prompt="oom", width=64, height=64, steps=2,
                                                                       seed=1))
    assert failed.status == "failed"
    assert "CUDA out of memory" in failed.error
    assert ImageJob.get_by_id(failed.job_id).status == "failed"


def test_the_service_runs_inpaint_and_hires_on_the_webui(server: StandinA1111, url: str, tmp_path: Path) -> None:
    from services.container import build_services
    from services.images import run_and_collect
    from settings import Settings
    from storage.files import parse_parameters, read_parameters
    from storage.models import ImageJob

    settings = Settings(profile="tiny", data_dir=tmp_path / "data", warmup=False, image_backend="a1111",
                        a1111_url=url, a1111_auth=":".join(AUTH), a1111_poll_s=0.02)
    services = build_services(settings)
    init, mask = gradient(), half_mask()
    snap = run_and_collect(services.images, services.images.validate(
        mode="inpaint", prompt="a red scarf", width=64, height=64, steps=3, seed=8, init_image=init, mask=mask,
        mask_blur=4, denoising_strength=0.5))
    assert snap.status == "done", snap.message
    assert server.routes[-1] == "img2img"
    params = parse_parameters(read_parameters(snap.files[0]))
    assert (params["Denoising strength"], params["Mask blur"]) == ("0.5", "4")
    assert params["Model hash"] == "6ce0161689"
    assert ImageJob.get_by_id(snap.info["job_id"]).mode == "inpaint"

    hires = run_and_collect(services.images, services.images.validate(
        prompt="a castle", width=64, height=64, steps=2, seed=3, enable_hr=True, hr_scale=1.5,
        hr_upscaler="Lanczos", hr_second_pass_steps=2, denoising_strength=0.5))
    assert hires.status == "done", hires.message
    assert server.requests[-1]["enable_hr"] is True
    params = parse_parameters(read_parameters(hires.files[0]))
    assert (params["Hires upscale"], params["Hires steps"], params["Hires upscaler"]) == ("1.5", "2", "Lanczos")


def test_the_service_sends_checked_units_to_the_webui(server: StandinA1111, url: str, tmp_path: Path) -> None:
    import base64
    import io

    from services.container import build_services
    from services.images import run_and_collect
    from settings import Settings
    from storage.files import parse_parameters, read_parameters

    settings = Settings(profile="tiny", data_dir=tmp_path / "data", warmup=False, image_backend="a1111",
                        a1111_url=url, a1111_auth=":".join(AUTH), a1111_poll_s=0.02)
    services = build_services(settings)
    out = io.BytesIO()
    gradient().save(out, format="PNG")
    unit = {"image": base64.b64encode(out.getvalue()).decode(), "module": "canny",
            "model": "control_v11p_sd15_canny [d14c016b]", "weight": 1.5}
    snap = run_and_collect(services.images, services.images.validate(prompt="a fox", width=64, height=64, steps=2,
                                                                     seed=5, controlnet=[unit]))
    assert snap.status == "done", snap.message
    sent = server.requests[-1]["alwayson_scripts"]["ControlNet"]["args"][0]
    assert (sent["module"], sent["model"], sent["weight"], sent["enabled"]) == (
        "canny", "control_v11p_sd15_canny [d14c016b]", 1.5, True)
    # The module's defaults filled in, as the extension's own checks would.
    assert (sent["processor_res"], sent["threshold_a"], sent["threshold_b"]) == (512, 100, 200)
    params = parse_parameters(read_parameters(snap.files[0]))
    assert params["ControlNet 0"].startswith("Module: canny, Model: control_v11p_sd15_canny [d14c016b], Weight: 1.5")
    # A bad unit is still refused here, naming the field, before anything reaches the WebUI.
    before = len(server.requests)
    with pytest.raises(InvalidRequest) as refused:
        services.images.validate(prompt="a fox", width=64, height=64, steps=2, controlnet=[{**unit, "weight": 3}])
    assert "controlnet.0.weight" in refused.value.errors
    assert len(server.requests) == before
