"""PNG Info: Atelier's and AUTOMATIC1111's images read back into request fields in A1111's API names."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from contracts import InvalidRequest
from services import pnginfo
from storage.files import Parameters, write_png_atomic

# What AUTOMATIC1111 1.10 writes for a txt2img job with hires fix and two LoRAs (processing.create_infotext).
A1111_HIRES = (
    "masterpiece, a cat in a hat <lora:add_detail:0.8>, (smile:1.2)\n"
    "Negative prompt: blurry, lowres\n"
    "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234567, Size: 512x768, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, VAE hash: 735e4c3a44, "
    "VAE: vae-ft-mse-840000-ema-pruned.safetensors, Denoising strength: 0.45, Hires upscale: 2, Hires steps: 10, "
    'Hires upscaler: R-ESRGAN 4x+, Lora hashes: "add_detail: 7c6bad76eb54, more_art: 5b6a9ba1d4f0", '
    "Version: v1.10.1"
)
# ... and for an inpainting job, "Only masked", inverted mask, masked content "fill".
A1111_INPAINT = (
    "a red scarf\n"
    "Steps: 30, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7.5, Seed: 42, Size: 512x512, "
    "Model hash: e6bb9ea85b, Model: sd-v1-5-inpainting, Denoising strength: 0.75, Mask mode: Inpaint not masked, "
    "Mask blur: 8, Inpaint area: Only masked, Masked area padding: 48, Masked content: fill, Version: v1.10.1"
)


def png_with(text: str | None, **chunks: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    if text is not None:
        info.add_text("parameters", text)
    for key, value in chunks.items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "white").save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def test_an_a1111_hires_infotext_with_loras_parses_to_api_fields() -> None:
    info = pnginfo.read(png_with(A1111_HIRES))
    assert info["prompt"] == "masterpiece, a cat in a hat <lora:add_detail:0.8>, (smile:1.2)"
    assert info["negative_prompt"] == "blurry, lowres"
    assert (info["steps"], info["cfg_scale"], info["seed"]) == (20, 7.0, 1234567)
    assert (info["width"], info["height"]) == (512, 768)
    assert info["sampler_name"] == "DPM++ 2M Karras"  # A1111's split sampler + schedule, in Atelier's sampler names
    assert (info["model"], info["model_hash"]) == ("v1-5-pruned-emaonly", "6ce0161689")
    assert info["vae"] == "vae-ft-mse-840000-ema-pruned.safetensors"
    assert info["denoising_strength"] == 0.45
    assert (info["mode"], info["enable_hr"]) == ("txt2img", True)
    assert (info["hr_scale"], info["hr_second_pass_steps"], info["hr_upscaler"]) == (2.0, 10, "R-ESRGAN 4x+")
    assert info["lora_hashes"] == {"add_detail": "7c6bad76eb54", "more_art": "5b6a9ba1d4f0"}
    assert info["vae_hash"] == "735e4c3a44"
    assert info["extra"] == {"Version": "v1.10.1"}
    assert info["parameters"] == A1111_HIRES


def test_an_a1111_inpaint_infotext_gives_the_inpaint_fields() -> None:
    info = pnginfo.read(png_with(A1111_INPAINT))
    assert info["mode"] == "inpaint"
    assert info["sampler_name"] == "Euler a"
    assert info["extra"]["Schedule type"] == "Automatic"
    assert (info["denoising_strength"], info["mask_blur"]) == (0.75, 8)
    assert (info["inpaint_full_res"], info["inpaint_full_res_padding"]) == (True, 48)
    assert (info["inpainting_fill"], info["inpainting_mask_invert"]) == (0, 1)
    assert info["enable_hr"] is False


def test_an_img2img_infotext_without_inpaint_keys_is_img2img() -> None:
    text = "a sketch\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, Denoising strength: 0.6"
    info = pnginfo.parse(text)
    assert (info["mode"], info["denoising_strength"], info["enable_hr"]) == ("img2img", 0.6, False)
    assert "mask_blur" not in info


def test_an_atelier_png_round_trips_with_every_new_key(tmp_path: Path) -> None:
    params = Parameters(prompt="a fox, <lora:ink:0.5>", negative_prompt="blurry", steps=12, sampler="DPM++ 2M Karras",
                        cfg_scale=6.5, seed=77, width=512, height=256, model="dream: v2", model_hash="abcdef0123",
                        vae="clear-vae", denoising_strength=0.3, mask_mode="Inpaint not masked", mask_blur=6,
                        inpaint_area="Only masked", masked_area_padding=16, masked_content="latent noise",
                        lora_hashes="ink: 0123456789ab")
    path = write_png_atomic(Image.new("RGB", (512, 256)), tmp_path / "x.png", params)
    info = pnginfo.read(path)
    assert info["parameters"] == params.to_text()
    assert (info["prompt"], info["negative_prompt"]) == ("a fox, <lora:ink:0.5>", "blurry")
    assert (info["steps"], info["cfg_scale"], info["seed"], info["sampler_name"]) == (12, 6.5, 77, "DPM++ 2M Karras")
    assert (info["width"], info["height"], info["model"], info["model_hash"]) == (512, 256, "dream: v2", "abcdef0123")
    assert (info["vae"], info["denoising_strength"], info["mode"]) == ("clear-vae", 0.3, "inpaint")
    assert (info["mask_blur"], info["inpaint_full_res"], info["inpaint_full_res_padding"]) == (6, True, 16)
    assert (info["inpainting_fill"], info["inpainting_mask_invert"]) == (2, 1)
    assert info["lora_hashes"] == {"ink": "0123456789ab"}
    assert info["extra"] == {}

    hires = Parameters(prompt="p", negative_prompt="", steps=5, sampler="Euler a", cfg_scale=7, seed=1, width=64,
                       height=64, model="m", denoising_strength=0.5, hires_upscale=1.5, hires_upscaler="Lanczos")
    info = pnginfo.parse(hires.to_text())
    assert (info["mode"], info["enable_hr"], info["hr_scale"], info["hr_upscaler"]) == ("txt2img", True, 1.5,
                                                                                       "Lanczos")
    assert info["hr_second_pass_steps"] == 0  # unwritten: as many as the first pass


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_a1111_jpeg_and_webp_carry_it_in_the_exif_user_comment(fmt: str) -> None:
    exif = Image.Exif()
    # As A1111 writes it through piexif.helper.UserComment.dump(text, encoding="unicode").
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + A1111_INPAINT.encode("utf-16-be")
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, format=fmt, exif=exif)
    info = pnginfo.read(buffer.getvalue())
    assert info["parameters"] == A1111_INPAINT
    assert info["mask_blur"] == 8


def test_a_png_without_parameters_gets_a_clear_message() -> None:
    with pytest.raises(InvalidRequest) as caught:
        pnginfo.read(png_with(None))
    assert "image: this PNG carries no generation parameters" in caught.value.errors["image"]
    with pytest.raises(InvalidRequest, match="ComfyUI"):
        pnginfo.read(png_with(None, workflow="{}", prompt="{}"))


def test_not_an_image_is_refused_on_the_field() -> None:
    with pytest.raises(InvalidRequest) as caught:
        pnginfo.read(b"GIF89a....", field="png")
    assert caught.value.errors["png"].startswith("png: the file is a GIF image")


def test_a_large_image_is_read_for_its_metadata() -> None:
    # Only the header and text are read: the upload pixel limit (for decoding) does not apply here.
    from services.uploads import UploadLimits

    info = pnginfo.read(png_with(A1111_INPAINT), limits=UploadLimits(max_pixels=10))
    assert info["seed"] == 42


# --- damaged files and the size cap --------------------------------------------------------------------------------
def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_by_hand(before: bytes = b"", after: bytes = b"") -> bytes:
    """An 8x8 grey PNG with extra chunks before and after its pixels (PIL writes text only before them)."""
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 0, 0, 0, 0))
    pixels = chunk(b"IDAT", zlib.compress(b"\x00" * 8 * 9))
    return b"\x89PNG\r\n\x1a\n" + header + before + pixels + after + chunk(b"IEND", b"")


def refusal(data: bytes) -> str:
    with pytest.raises(InvalidRequest) as caught:
        pnginfo.read(data)
    return caught.value.errors["image"]


def test_a_cut_off_png_is_called_cut_off_wherever_it_ends() -> None:
    data = png_with(A1111_INPAINT)
    text_at = data.index(b"tEXt") - 4
    idat_at = data.index(b"IDAT") - 4
    # Inside IHDR, between chunks, inside the parameters chunk, inside the pixels, before IEND, one byte short.
    for end in (20, text_at, text_at + 40, idat_at + 10, len(data) - 12, len(data) - 1):
        message = refusal(data[:end])
        assert message.startswith("image: the PNG is cut off: it ends after"), (end, message)
        assert "carries no generation parameters" not in message


def test_a_damaged_png_is_called_damaged() -> None:
    data = bytearray(png_with(A1111_INPAINT))
    for where in (data.index(b"tEXt") + 20, data.index(b"IDAT") + 6, len(data) - 2):  # text, pixels, IEND's CRC
        broken = bytearray(data)
        broken[where] ^= 0xFF
        assert "fails its checksum" in refusal(bytes(broken))
    assert "does not start a valid chunk" in refusal(bytes(data[:8]) + b"\x00\x00\x00\x0dJUNK" + bytes(data[16:]))
    assert "does not start a valid chunk" in refusal(png_by_hand()[:8] + chunk(b"tEXt", b"parameters\0a") +
                                                     png_by_hand()[8:])  # the first chunk must be IHDR


def test_parameters_written_after_the_pixels_or_compressed_are_read() -> None:
    after = png_by_hand(after=chunk(b"tEXt", b"parameters\0" + A1111_INPAINT.encode("latin-1")))
    assert pnginfo.read(after)["parameters"] == A1111_INPAINT
    unicode_prompt = A1111_INPAINT.replace("a red scarf", "une écharpe rouge 🧣")
    for zipped in (False, True):
        info = PngImagePlugin.PngInfo()
        info.add_itxt("parameters", unicode_prompt, zip=zipped)
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8)).save(buffer, format="PNG", pnginfo=info)
        assert pnginfo.read(buffer.getvalue())["prompt"] == "une écharpe rouge 🧣"
    ztxt = png_by_hand(before=chunk(b"zTXt", b"parameters\0\0" + zlib.compress(A1111_INPAINT.encode())))
    assert pnginfo.read(ztxt)["seed"] == 42


def test_parameters_text_over_the_cap_is_refused_whatever_its_chunk() -> None:
    cap = pnginfo.MAX_TEXT_BYTES
    assert cap == 64 * 1024
    tail = "\nSteps: 4, CFG scale: 7, Seed: 1"
    fits = "f" * (cap - len(tail)) + tail
    assert len(fits) == cap
    assert pnginfo.read(png_with(fits))["seed"] == 1
    big = "x" * (10 * 1024 * 1024)
    bomb = zlib.compress(b"y" * (16 * 1024 * 1024))  # 16 MB of text in 16 KB
    for data in (png_with("f" + fits), png_with(big),
                 png_by_hand(before=chunk(b"zTXt", b"parameters\0\0" + bomb)),
                 png_by_hand(after=chunk(b"iTXt", b"parameters\0\x01\0\0\0" + bomb))):
        assert refusal(data) == ("image: its parameters text is over 64 KiB, the most PNG Info reads (Atelier and "
                                 "AUTOMATIC1111 write a few KB).")
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + ("z" * (cap + 1)).encode("utf-16-be")
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="WEBP", exif=exif)
    assert "over 64 KiB" in refusal(buffer.getvalue())


def test_a_damaged_compressed_parameters_chunk_is_called_damaged() -> None:
    stream = zlib.compress(A1111_INPAINT.encode())
    assert "cut off" in refusal(png_by_hand(before=chunk(b"zTXt", b"parameters\0\0" + stream[:-8])))
    assert "cannot be decompressed" in refusal(png_by_hand(before=chunk(b"zTXt", b"parameters\0\0garbage")))


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_a_cut_off_jpeg_or_webp_is_called_damaged(fmt: str) -> None:
    # PIL's own checks see to these (they held before the PNG walker came); kept so that it stays so.
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + A1111_INPAINT.encode("utf-16-be")
    buffer = io.BytesIO()
    Image.effect_noise((64, 64), 60).convert("RGB").save(buffer, format=fmt, exif=exif)
    data = buffer.getvalue()
    assert pnginfo.read(data)["seed"] == 42
    exif_at = data.index(b"EXIF" if fmt == "WEBP" else b"Exif")
    # Inside the EXIF block, and (WebP keeps EXIF last) just before it.
    for end in (exif_at + 30, exif_at - 4 if fmt == "WEBP" else exif_at + 200):
        message = refusal(data[:end])
        assert "cut off" in message or "damaged" in message, (end, message)
        assert "carries no generation parameters" not in message
