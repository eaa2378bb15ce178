"""Gradio's internal routes under attack, on a real server with two accounts: the image editor's component_server
(fields, indexes, sizes, pixel bombs, other users' ids, concurrency), the upload route (declared and chunked bodies,
several files, progress names), every other POST route Gradio serves, and the decoding event behind the editor."""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from starlette.routing import Mount

from api.internal_routes import FORM_ENVELOPE, SERVED
from services.accounts import AccountService
from services.editor_blobs import ENTRY_OVERHEAD, MAX_LAYERS
from storage.db import open_database
from tests.server import serve

PASSWORD = "correct horse battery"
MAX_BYTES = 256 * 1024  # small limits keep the attacks cheap; the rules are the same at the defaults
MAX_PIXELS = 512 * 512
COMPONENT_SERVER, UPLOAD = "gradio_api/component_server/", "gradio_api/upload"
APPS: list[Any] = []


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from settings import Settings

    settings = Settings(profile="tiny", data_dir=tmp_path_factory.mktemp("data"), warmup=False,
                        upload_max_bytes=MAX_BYTES, upload_max_pixels=MAX_PIXELS, limit_logins="1000/minute",
                        limit_uploads="10000/minute", limit_reads="10000/minute")
    settings.ensure_dirs()
    open_database(settings.db_path)
    for name in ("alice", "bob"):
        AccountService().add(name, PASSWORD)
    with serve(settings, APPS) as url:
        yield url


def logged_in(server: str, name: str) -> httpx.Client:
    http = httpx.Client(base_url=server, timeout=60)
    assert http.post("/login", data={"username": name, "password": PASSWORD}).status_code == 200
    return http


@pytest.fixture(scope="module")
def alice(server: str) -> Iterator[httpx.Client]:
    http = logged_in(server, "alice")
    yield http
    http.close()


@pytest.fixture(scope="module")
def bob(server: str) -> Iterator[httpx.Client]:
    http = logged_in(server, "bob")
    yield http
    http.close()


@pytest.fixture(scope="module")
def config(alice: httpx.Client) -> dict[str, Any]:
    return alice.get("/config").json()


@pytest.fixture(scope="module")
def editor(config: dict[str, Any]) -> int:
    return next(c["id"] for c in config["components"] if c["type"] == "imageeditor")


@pytest.fixture(scope="module")
def split_fn(config: dict[str, Any], editor: int) -> int:
    return next(d["id"] for d in config["dependencies"] if d["inputs"][:1] == [editor])


@pytest.fixture
def blobs() -> Any:
    store = APPS[0].state.services.uploads.blobs
    store._entries.clear()  # each test starts with nothing pending
    return store


def encode(image: Image.Image, fmt: str = "PNG", **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def picture(size: tuple[int, int] = (32, 24)) -> bytes:
    return encode(Image.new("RGBA", size, (10, 120, 200, 255)))


def strokes(size: tuple[int, int] = (32, 24)) -> bytes:
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    layer.paste((255, 255, 255, 255), (4, 4, 12, 12))
    return encode(layer)


def noise(size: int) -> bytes:
    """A PNG of about `size` bytes (random pixels do not compress)."""
    side = int((size / 3) ** 0.5)
    return encode(Image.fromarray(np.random.default_rng(side).integers(0, 255, (side, side, 3), dtype=np.uint8)))


def claiming(width: int, height: int) -> bytes:
    """A tiny valid PNG whose header claims another size: a decompression bomb before it is decoded."""
    data = bytearray(encode(Image.new("L", (8, 8))))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def piece(http: httpx.Client, editor: int, blob: bytes, **fields: str | None) -> httpx.Response:
    """POST one piece as Gradio's editor sends it (a form: the file, then its fields); a field given as None is left
    out, an extra name is added."""
    form = {"id": "v4lu3", "type": "background", "index": "null", "component_id": str(editor),
            "fn_name": "accept_blobs", "session_hash": "s3ss10n", **fields}
    return http.post(COMPONENT_SERVER, data={k: v for k, v in form.items() if v is not None},
                     files={"file": ("background.png", blob, "image/png")})


def run_split(http: httpx.Client, split_fn: int, editor_value: Any, mask: Any = None) -> dict[str, Any]:
    """Run the editor's decoding step through the queue as the UI does; its completion message."""
    session = os.urandom(6).hex()
    joined = http.post("gradio_api/queue/join", json={"data": [editor_value, mask], "fn_index": split_fn,
                                                       "session_hash": session, "trigger_id": None})
    assert joined.status_code == 200, joined.text
    with http.stream("GET", f"gradio_api/queue/data?session_hash={session}") as stream:
        for line in stream.iter_lines():
            if line.startswith("data:") and (message := json.loads(line[5:]))["msg"] == "process_completed":
                return message
    raise AssertionError("the event never completed")


def refused(answer: httpx.Response, status: int, *words: str) -> None:
    assert answer.status_code == status, answer.text
    detail = answer.json()["detail"]
    assert all(word in detail for word in words), detail


def error_of(message: dict[str, Any]) -> str:
    assert not message["success"], message
    return message["output"]["error"] or ""


# --- component_server ------------------------------------------------------------------------------------------
def test_the_editors_pieces_are_kept_under_their_owner_and_read_once(alice: httpx.Client, bob: httpx.Client,
                                                                     editor: int, split_fn: int, blobs: Any) -> None:
    # The file can come first or last in the form: the order of its parts does not matter.
    assert piece(alice, editor, picture(), id="al1ce").json() is None
    reordered = alice.post(COMPONENT_SERVER, files=[("file", ("layer_0.png", strokes(), "image/png")),
                                                    ("index", (None, "0")), ("type", (None, "layer")),
                                                    ("id", (None, "al1ce")), ("fn_name", (None, "accept_blobs")),
                                                    ("component_id", (None, str(editor)))])
    assert reordered.status_code == 200, reordered.text
    assert piece(alice, editor, picture(), id="al1ce", type="composite").status_code == 200
    assert len(blobs) == 1
    # Bob naming Alice's id reaches nothing, and leaves it to her.
    assert "did not reach the server" in error_of(run_split(bob, split_fn, {"id": "al1ce"}))
    done = run_split(alice, split_fn, {"id": "al1ce"})
    assert done["success"], done
    init, mask = done["output"]["data"]
    assert Image.open(init["path"]).size == (32, 24)
    assert Image.open(mask["path"]).getpixel((6, 6)) == 255
    assert "did not reach the server" in error_of(run_split(alice, split_fn, {"id": "al1ce"}))  # taken once
    assert len(blobs) == 0


@pytest.mark.parametrize("index", ["50000000", str(MAX_LAYERS), "-1", "1e9", "0x1", " 1", "NaN", "", "null",
                                   "9" * 400, "１"])
def test_a_layer_index_outside_the_editors_layers_is_a_422_and_keeps_nothing(alice: httpx.Client, editor: int,
                                                                             blobs: Any, index: str) -> None:
    refused(piece(alice, editor, strokes(), type="layer", index=index), 422, "index")
    assert len(blobs) == 0


@pytest.mark.parametrize("missing", ["component_id", "fn_name", "id", "type"])
def test_a_missing_field_is_a_422_naming_it(alice: httpx.Client, editor: int, blobs: Any, missing: str) -> None:
    refused(piece(alice, editor, picture(), **{missing: None}), 422, missing)
    assert len(blobs) == 0


@pytest.mark.parametrize(("fields", "status", "words"), [
    ({"type": "mask"}, 422, ("type",)),
    ({"id": "../../etc"}, 422, ("id",)),
    ({"id": "x" * 65}, 422, ("id",)),
    ({"id": ""}, 422, ("id",)),
    ({"fn_name": "ls"}, 404, ("accept_blobs",)),
    ({"fn_name": "save_workflow"}, 404, ("accept_blobs",)),
    ({"fn_name": "__init__"}, 404, ("accept_blobs",)),
    ({"component_id": "1"}, 404, ("no image editor",)),
    ({"component_id": "-5"}, 404, ("no image editor",)),
    ({"component_id": "99999999999999999999999"}, 404, ("no image editor",)),
    ({"component_id": "abc"}, 404, ("no image editor",)),
    ({"component_id": ""}, 404, ("no image editor",)),
])
def test_fields_outside_the_editors_upload_are_refused(alice: httpx.Client, editor: int, blobs: Any,
                                                       fields: dict[str, str], status: int,
                                                       words: tuple[str, ...]) -> None:
    refused(piece(alice, editor, picture(), **fields), status, *words)
    assert len(blobs) == 0


def test_a_form_that_is_not_one_piece_is_refused(alice: httpx.Client, config: dict[str, Any], editor: int,
                                                 blobs: Any) -> None:
    textbox = next(c["id"] for c in config["components"] if c["type"] == "textbox")
    # Gradio's JSON form of a server call, for the editor and for another component.
    for component in (editor, textbox):
        refused(alice.post(COMPONENT_SERVER, json={"data": {"id": "x", "type": "background", "index": 50_000_000},
                                                   "component_id": component, "fn_name": "accept_blobs",
                                                   "session_hash": "s"}), 415, "multipart")
    misnamed = alice.post(COMPONENT_SERVER, data={"id": "x", "type": "background", "component_id": str(editor),
                                                  "fn_name": "accept_blobs"},
                          files={"picture": ("a.png", picture(), "image/png")})
    refused(misnamed, 422, "exactly one file")
    refused(alice.post(COMPONENT_SERVER, content=b"id=x&type=layer&index=9",
                       headers={"content-type": "application/x-www-form-urlencoded"}), 415, "multipart")
    refused(alice.post(COMPONENT_SERVER, content=b"--x\r\n", headers={"content-type": "multipart/form-data"}), 400,
            "could not be read")
    two_files = alice.post(COMPONENT_SERVER, data={"id": "x", "type": "background", "component_id": str(editor),
                                                   "fn_name": "accept_blobs"},
                           files=[("file", ("a.png", picture(), "image/png")),
                                  ("file", ("b.png", picture(), "image/png"))])
    refused(two_files, 400, "could not be read")
    refused(alice.post(COMPONENT_SERVER, data={"id": ["x", "y"], "type": "background", "component_id": str(editor),
                                               "fn_name": "accept_blobs"},
                       files={"file": ("a.png", picture(), "image/png")}), 422, "once")
    refused(piece(alice, editor, picture(), id="x", note="n" * 5000), 400, "could not be read")
    many = {f"f{i}": "1" for i in range(40)}
    refused(piece(alice, editor, picture(), **many), 400, "could not be read")
    assert len(blobs) == 0


def test_a_piece_over_the_upload_limit_is_a_413_declared_or_streamed(alice: httpx.Client, editor: int,
                                                                     blobs: Any) -> None:
    head = (b'--b\r\nContent-Disposition: form-data; name="file"; filename="background.png"\r\n'
            b"Content-Type: image/png\r\n\r\n")
    body = head + b"\0" * (MAX_BYTES + FORM_ENVELOPE) + b"\r\n--b--\r\n"
    kind = {"content-type": "multipart/form-data; boundary=b"}
    declared = alice.post(COMPONENT_SERVER, content=body, headers=kind)
    streamed = alice.post(COMPONENT_SERVER, content=(body[i:i + 65536] for i in range(0, len(body), 65536)),
                          headers=kind)
    for answer in (declared, streamed):
        refused(answer, 413, "too large", str(MAX_BYTES))
    # Under the body cap but over the file limit: the upload check says so.
    refused(piece(alice, editor, noise(MAX_BYTES + 4096)), 422, "larger than")
    assert blobs.nbytes == ENTRY_OVERHEAD  # only the note of why, for the event to show


BOMBS = {
    "1-bit PNG": lambda: encode(Image.new("1", (2000, 2000))),
    "PNG header claiming 60000x60000": lambda: claiming(60000, 60000),
    "JPEG": lambda: encode(Image.new("L", (1024, 1024)), "JPEG", quality=5),
    "WebP": lambda: encode(Image.new("RGB", (1024, 1024)), "WEBP", quality=1),
}


@pytest.mark.parametrize("bomb", list(BOMBS))
def test_a_piece_over_the_pixel_limit_is_refused_from_its_header_and_the_event_says_why(
        alice: httpx.Client, editor: int, split_fn: int, blobs: Any, bomb: str) -> None:
    blob = BOMBS[bomb]()
    assert len(blob) < MAX_BYTES  # small on the wire, huge once decoded
    refused(piece(alice, editor, blob, id="b0mb"), 422, "pixels")
    refused(piece(alice, editor, strokes(), id="b0mb", type="layer", index="0"), 422, "pixels")  # nor the rest
    assert blobs.nbytes == ENTRY_OVERHEAD  # nothing of the submission is held, only why it was refused
    assert "pixels" in error_of(run_split(alice, split_fn, {"id": "b0mb"}))


def test_a_piece_that_is_not_an_image_is_refused(alice: httpx.Client, editor: int, blobs: Any) -> None:
    refused(piece(alice, editor, b"GIF89a" + b"\0" * 64), 422, "GIF")
    refused(piece(alice, editor, b"\x89PNG\r\n\x1a\n" + b"\0" * 64), 422, "damaged")
    refused(piece(alice, editor, b""), 422, "empty")


def test_an_editor_value_naming_a_file_is_checked_before_it_is_decoded(alice: httpx.Client, split_fn: int) -> None:
    uploaded = alice.post(UPLOAD, files={"files": ("huge.png", BOMBS["1-bit PNG"](), "image/png")})
    assert uploaded.status_code == 200, uploaded.text
    path = uploaded.json()[0]
    value = {"background": {"path": path, "meta": {"_type": "gradio.FileData"}}, "layers": [], "composite": None}
    assert "pixels" in error_of(run_split(alice, split_fn, value))
    mask = {"path": path, "meta": {"_type": "gradio.FileData"}}
    small = alice.post(UPLOAD, files={"files": ("small.png", picture(), "image/png")}).json()[0]
    value = {"background": {"path": small, "meta": {"_type": "gradio.FileData"}}, "layers": [], "composite": None}
    assert "pixels" in error_of(run_split(alice, split_fn, value, mask))


def test_pieces_from_many_requests_at_once_stay_within_the_owners_budget(alice: httpx.Client, editor: int,
                                                                         blobs: Any) -> None:
    blob = noise(MAX_BYTES - 8192)
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda i: piece(alice, editor, blob, id=f"c{i}"), range(24)))
    assert [a.status_code for a in answers] == [200] * 24, [a.text for a in answers if a.status_code != 200]
    assert 0 < blobs.nbytes <= blobs.budget.owner_max_bytes
    assert len(blobs) <= 2  # the budget holds the newest two at this size; the older ones went


def test_pieces_need_a_login(server: str, editor: int, blobs: Any) -> None:
    with httpx.Client(base_url=server, timeout=30) as anonymous:
        refused(piece(anonymous, editor, picture()), 401, "Log in")
    assert len(blobs) == 0


def test_no_event_lets_gradio_decode_an_uploaded_image_and_the_decoding_ones_take_turns(server: str) -> None:
    import gradio as gr

    gradio_app = next(r.app for r in APPS[0].routes if isinstance(r, Mount) and r.path == "")
    blocks = gradio_app.get_blocks()
    pictures = (gr.Image, gr.ImageEditor, gr.Gallery, gr.File)
    taking = [fn for fn in blocks.fns.values() if any(isinstance(c, pictures) for c in fn.inputs)]
    assert len(taking) >= 5
    for fn in taking:
        # Gradio's preprocess decodes in full before any check of ours; the handlers decode through the upload checks.
        assert fn.preprocess is False, fn.name
    decoding = {fn.name: fn for fn in taking if fn.name not in ("show_info", "png_info", "send_to_img2img",
                                                                 "send_to_inpaint")}  # those read text chunks or paths
    # import_archive: an account archive's images (issue 25); show_map, controlnet_preview and pack_units: a ControlNet
    # unit's picture, made into its map or packed for the job (issue 24).
    assert set(decoding) == {"run", "split", "import_archive", "show_map", "controlnet_preview", "pack_units"}
    assert all(fn.concurrency_limit is not None for fn in decoding.values())
    # Streaming inputs would need the stream routes, which the gateway refuses.
    assert not any(getattr(block, "streaming", False) for block in blocks.blocks.values())


# --- upload ----------------------------------------------------------------------------------------------------
def temp_files() -> set[Path]:
    return {p for p in Path(os.environ["GRADIO_TEMP_DIR"]).rglob("*") if p.is_file()}


def multipart(*files: tuple[str, bytes]) -> bytes:
    parts = [f'--b\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
             f"Content-Type: image/png\r\n\r\n".encode() + data + b"\r\n" for name, data in files]
    return b"".join(parts) + b"--b--\r\n"


def test_an_upload_over_the_limit_is_refused_declared_streamed_or_in_several_files(alice: httpx.Client) -> None:
    before = temp_files()
    kind = {"content-type": "multipart/form-data; boundary=b"}
    big = multipart(("big.png", b"\0" * (MAX_BYTES + FORM_ENVELOPE)))
    several = multipart(*((f"{i}.png", b"\0" * (MAX_BYTES // 2)) for i in range(3)))  # each one under the limit
    for body in (big, several):
        declared = alice.post(UPLOAD, content=body, headers=kind)
        streamed = alice.post(UPLOAD, content=(body[i:i + 16384] for i in range(0, len(body), 16384)), headers=kind)
        for answer in (declared, streamed):
            assert answer.status_code == 413, answer.text
            assert str(MAX_BYTES) in answer.text
    # One file just over the limit, under the body cap: Gradio's own per-file limit stops it.
    assert alice.post(UPLOAD, content=multipart(("edge.png", b"\0" * (MAX_BYTES + 1))), headers=kind
                      ).status_code == 413
    assert temp_files() == before  # nothing half-written is left behind
    assert alice.post(UPLOAD, files={"files": ("ok.png", picture(), "image/png")}).status_code == 200


@pytest.mark.parametrize(("send", "status", "words"), [
    ({"data": {"files": "not a file"}, "files": {"x": ("a.png", b"x", "image/png")}}, 422, ("only files",)),
    ({"files": {"other": ("a.png", b"x", "image/png")}}, 422, ("only files",)),
    ({"files": [("files", (f"{i}.png", b"x", "image/png")) for i in range(9)]}, 422, ("8 files",)),
    ({"json": {"files": ["a"]}}, 415, ("multipart",)),
    ({"content": b"--b\r\nnot a header line\r\n\r\nx\r\n--b--\r\n",
      "headers": {"content-type": "multipart/form-data; boundary=b"}}, 400, ("could not be read",)),
])
def test_an_upload_that_is_not_files_named_files_is_refused_and_leaves_nothing(alice: httpx.Client,
                                                                              send: dict[str, Any], status: int,
                                                                              words: tuple[str, ...]) -> None:
    # Gradio answered a text part named "files" with a 500, and kept a file part of another name on disk for good.
    before = temp_files()
    refused(alice.post(UPLOAD, **send), status, *words)
    assert temp_files() == before


@pytest.mark.parametrize("query", ["upload_id=" + "a" * 65, "upload_id=a&upload_id=b", "upload_id=%2E%2E%2F",
                                   "upload_id="])
def test_an_upload_progress_name_gradio_would_keep_is_refused(alice: httpx.Client, query: str) -> None:
    refused(alice.post(f"{UPLOAD}?{query}", files={"files": ("a.png", picture(), "image/png")}), 422, "upload_id")


# --- every other POST route ------------------------------------------------------------------------------------
def post_routes(app: Any) -> set[str]:
    """The paths of every POST route the mounted Gradio app serves."""
    gradio_app = next(r.app for r in app.routes if isinstance(r, Mount) and r.path == "")
    paths: set[str] = set()

    def walk(routes: list[Any]) -> None:
        for route in routes:
            if hasattr(route, "original_router"):  # FastAPI's included router
                walk(route.original_router.routes)
            elif "POST" in (getattr(route, "methods", None) or ()):
                paths.add(route.path.rstrip("/"))

    walk(gradio_app.router.routes)
    return paths


def test_every_post_route_gradio_serves_is_capped_or_refused_unread(server: str, alice: httpx.Client) -> None:
    routes = post_routes(APPS[0])
    kept = {"/login", *SERVED, "/gradio_api/call/{api_name}", "/gradio_api/call/v2/{api_name}"}
    assert kept <= routes  # Gradio still serves what the gateway guards
    refused_routes = sorted(routes - kept)
    assert {"/gradio_api/run/{api_name}", "/gradio_api/stream/{event_id}", "/gradio_api/process_recording",
            "/gradio_api/vibe-edit"} <= set(refused_routes)
    for route in refused_routes:
        path = route.replace("{api_name}", "history").replace("{event_id}", "e1")
        for method in ("POST", "PUT", "DELETE"):
            answer = alice.request(method, path, content=b"{}", headers={"content-type": "application/json"})
            refused(answer, 404, "does not serve")
    with httpx.Client(base_url=server, timeout=30) as anonymous:
        refused(anonymous.post("gradio_api/run/history", json={"data": []}), 404, "does not serve")


def test_reset_is_capped_and_its_body_checked(alice: httpx.Client) -> None:
    assert alice.post("gradio_api/reset", json={"event_id": "e1"}).json() == {"success": True}
    refused(alice.post("gradio_api/reset", json={"nope": 1}), 422, "event_id")
    refused(alice.post("gradio_api/reset", json={"event_id": 5}), 422, "event_id")
    refused(alice.post("gradio_api/reset", content=b"{", headers={"content-type": "application/json"}), 400, "JSON")
    # A form where Gradio expects JSON: FastAPI's own answer was a 500 (it cannot put the bytes in its message).
    refused(alice.post("gradio_api/reset", data={"event_id": "e1"}, files={"f": ("a", b"\xff\xfe", "x/y")}), 415,
            "JSON")
    body = json.dumps({"event_id": "x" * (1024 * 1024)}).encode()
    refused(alice.post("gradio_api/reset", content=(body[i:i + 65536] for i in range(0, len(body), 65536)),
                       headers={"content-type": "application/json"}), 413, "1 MiB")


def test_pieces_and_uploads_count_as_uploads_and_resets_and_cancels_as_reads(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from api.server import create_app
    from settings import Settings

    settings = Settings(profile="tiny", data_dir=tmp_path, warmup=False, rate_limits="on", limit_uploads="2/minute",
                        limit_reads="2/minute")
    http = TestClient(create_app(settings))
    editor = next(c["id"] for c in http.get("/config").json()["components"] if c["type"] == "imageeditor")
    codes = [piece(http, editor, picture()).status_code,
             http.post(UPLOAD, files={"files": ("a.png", picture(), "image/png")}).status_code,
             piece(http, editor, picture()).status_code,
             http.post(UPLOAD, files={"files": ("a.png", picture(), "image/png")}).status_code]
    assert codes == [200, 200, 429, 429]
    cancel = {"session_hash": "s", "fn_index": 0, "event_id": "e"}
    codes = [http.post("gradio_api/reset", json={"event_id": "e"}).status_code,
             http.post("gradio_api/cancel", json=cancel).status_code,
             http.post("gradio_api/reset", json={"event_id": "e"}).status_code]
    assert codes == [200, 200, 429]


def test_a_stop_of_ones_own_running_job_passes_when_the_reads_are_used_up(tmp_path: Path, tiny_sd_dir: Path) -> None:
    import sqlite3
    import time

    from gradio_client import Client

    from tests.services.conftest import tiny_settings

    # A Stop refused for the read limit (the React client's polls can use it up) left the job running to the end.
    settings = tiny_settings(tmp_path, tiny_sd_dir, rate_limits="on", limit_reads="2/minute", cache_enabled=False)
    with serve(settings) as url, httpx.Client(base_url=url, timeout=30) as http:
        client = Client(url, verbose=False, download_files=False)
        job = client.submit("a long one", "", 64, 64, 400, 7.0, 3, "Euler a", 1, api_name="/generate_image")
        deadline = time.monotonic() + 60
        while len(job.outputs()) < 2:  # a few steps in
            assert time.monotonic() < deadline, "the long job never started"
            time.sleep(0.05)
        reads = [http.post("gradio_api/reset", json={"event_id": "e"}).status_code for _ in range(3)]
        assert reads == [200, 200, 429]
        # A cancel naming no live event is still a read, refused.
        stray = {"session_hash": client.session_hash, "fn_index": 0, "event_id": "gone"}
        refused(http.post("gradio_api/cancel", json=stray), 429, "requests")
        job.cancel()
        with sqlite3.connect(tmp_path / "atelier.db") as db:
            while (status := db.execute("SELECT status FROM imagejob WHERE prompt = 'a long one'").fetchone()) is None \
                    or status[0] not in ("done", "cancelled", "failed"):
                assert time.monotonic() < deadline + 120, status
                time.sleep(0.1)
        assert status[0] == "cancelled"


def test_bodies_held_at_once_share_a_budget_past_which_the_answer_is_a_503() -> None:
    import asyncio

    from api.internal_routes import BodyLimits

    release = asyncio.Event()

    async def holding(scope: Any, receive: Any, send: Any) -> None:
        """Reads its whole body, then keeps it until released, as a slow handler would."""
        more = True
        while more:
            more = (await receive()).get("more_body", False)
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def scenario() -> list[int]:
        guarded = BodyLimits(holding, upload_max_bytes=MAX_BYTES, in_flight_max_bytes=1024 * 1024)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=guarded), base_url="http://t") as http:
            body = b"x" * (700 * 1024)
            first = asyncio.create_task(http.post("/gradio_api/queue/join", content=body))
            await asyncio.sleep(0.2)  # the first body is in and held
            # A guard against a hang, not a timing: without the budget this request would wait for the release.
            second = await asyncio.wait_for(http.post("/gradio_api/cancel", content=body), 60)
            assert "too many requests at once" in second.json()["detail"]
            assert second.headers["retry-after"] == "5"
            release.set()
            done = await first
            third = await http.post("/gradio_api/cancel", content=body)  # the first one's bytes were given back
            return [done.status_code, second.status_code, third.status_code]

    assert asyncio.run(scenario()) == [200, 503, 200]
