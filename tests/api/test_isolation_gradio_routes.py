"""Alice and Bob on one server, Bob attacking through Gradio's own routes over real HTTP: the file route however
a path is spelled (encoded once or twice, mixed case, backslashes, dot segments, symlinks, the old `file/`
route), and every route that names a session, an event or an upload (queue/data, queue/join, cancel, call,
heartbeat, stream, deep_link, reset, component_server, run, upload, upload_progress), alone and at once.

Requests that must reach the server exactly as written (dot segments and all) go through http.client, which sends
the path as given; httpx would normalise it first.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
from gradio_client import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from PIL import Image

from services.accounts import AccountService
from settings import Settings
from storage.db import open_database
from tests.server import serve
from tests.services.conftest import tiny_settings

PASSWORD = "correct horse battery"
IMAGE: dict[str, Any] = {"prompt": "alice's private fox", "negative_prompt": "", "width": 64, "height": 64,
                         "steps": 1, "cfg_scale": 7.0, "seed": 42, "sampler": "Euler a", "batch_count": 1}
GRADIO = "/gradio_api"


@dataclass
class Site:
    """The server under attack and what the test knows of it."""

    url: str
    settings: Settings
    app: Any
    temp: Path  # Gradio's upload and cache folder (GRADIO_TEMP_DIR)
    cookies: dict[str, str] = field(default_factory=dict)  # user -> Cookie header


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, tiny_sd_dir: Path) -> Iterator[Site]:
    settings = tiny_settings(tmp_path_factory.mktemp("data"), tiny_sd_dir, limit_image_jobs="1000/minute",
                             limit_reads="100000/minute", limit_uploads="1000/minute", user_queue_quota=50)
    settings.ensure_dirs()
    open_database(settings.db_path)
    accounts = AccountService()
    for name in ("alice", "bob"):
        accounts.add(name, PASSWORD)
    apps: list[Any] = []
    with serve(settings, apps) as url:
        found = Site(url.rstrip("/"), settings, apps[0], Path(os.environ["GRADIO_TEMP_DIR"]))
        for name in ("alice", "bob"):
            answer = httpx.post(found.url + "/login", data={"username": name, "password": PASSWORD})
            assert answer.status_code == 200
            found.cookies[name] = "; ".join(f"{k}={v}" for k, v in answer.cookies.items())
        yield found


def raw(site: Site, method: str, target: str, user: str | None = None, body: bytes | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """Send `target` as written (no normalisation of the path); the status and the body."""
    parts = urlsplit(site.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    sent = dict(headers or {})
    if user is not None:
        sent["Cookie"] = site.cookies[user]
    try:
        connection.request(method, target, body=body, headers=sent)
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def as_user(site: Site, user: str) -> httpx.Client:
    return httpx.Client(base_url=site.url, timeout=60, headers={"Cookie": site.cookies[user]})


def fn_index(site: Site, api_name: str) -> int:
    config = as_user(site, "alice").get("/config").json()
    return next(d["id"] for d in config["dependencies"] if d.get("api_name") == api_name)


@dataclass
class Work:
    """What Alice made: a stored image, Gradio's copy of it she was handed, an upload; and one result of Bob's."""

    stored: Path
    cache: Path
    upload: Path
    bob_cache: Path


@pytest.fixture(scope="module")
def work(site: Site) -> Work:
    alice = Client(site.url, auth=("alice", PASSWORD), verbose=False, download_files=False)
    *_, gallery, info = alice.predict(**IMAGE, api_name="/generate_image")
    bob = Client(site.url, auth=("bob", PASSWORD), verbose=False, download_files=False)
    *_, bob_gallery, _ = bob.predict(**{**IMAGE, "prompt": "bob's own fox", "seed": 7}, api_name="/generate_image")
    png = BytesIO()
    Image.new("RGB", (8, 8), "red").save(png, format="PNG")
    uploaded = as_user(site, "alice").post(f"{GRADIO}/upload", files={"files": ("secret.png", png.getvalue())})
    assert uploaded.status_code == 200, uploaded.text
    return Work(stored=site.settings.images_dir / info["files"][0], cache=Path(gallery[0]["image"]["path"]),
                upload=Path(uploaded.json()[0]), bob_cache=Path(bob_gallery[0]["image"]["path"]))


def spellings(site: Site, work: Work) -> dict[str, str]:
    """The stored image and Alice's files, named every way we know; each a request target."""
    temp, stored = str(site.temp), str(work.stored)
    # From Gradio's view, `a%2Fb%2Fc` is one folder: the three `..` climb to the grandparent of its folder.
    from_top = os.path.relpath(stored, site.temp.parent.parent)
    targets = {
        "stored, plain": f"{GRADIO}/file={stored}",
        "stored, encoded once": f"{GRADIO}/file={quote(stored)}",
        "stored, old route": f"{GRADIO}/file/{stored}",
        "twice-encoded slashes (the report)": f"{GRADIO}/file={temp}/a%252Fb%252Fc/../../../{from_top}",
        "twice-encoded, mixed case": f"{GRADIO}/file={temp}/a%252fb%252Fc/../../../{from_top}",
        "twice-encoded, encoded dots": f"{GRADIO}/file={temp}/a%252Fb%252Fc/%2e%2E/%2E%2e/%2e%2e/{from_top}",
        "twice-encoded, old route": f"{GRADIO}/file/{temp}/a%252Fb%252Fc/../../../{from_top}",
        "three times encoded": f"{GRADIO}/file={temp}/a%25252Fb%25252Fc/../../../{from_top}",
        "encoded once": f"{GRADIO}/file={temp}/a%2Fb%2Fc/..%2F..%2F..%2F{from_top}",
        "backslashes": f"{GRADIO}/file={temp}\\..\\..\\{from_top}",
        "dot segments": f"{GRADIO}/file={temp}/./x/../../{os.path.relpath(stored, site.temp.parent)}",
        "double slashes": f"{GRADIO}/file=/{stored}",
        "relative": f"{GRADIO}/file={os.path.relpath(stored)}",
    }
    for name, path in (("alice's result", work.cache), ("alice's upload", work.upload)):
        targets[f"{name}, plain"] = f"{GRADIO}/file={path}"
        targets[f"{name}, encoded once"] = f"{GRADIO}/file={quote(str(path))}"
        targets[f"{name}, old route"] = f"{GRADIO}/file/{path}"
        targets[f"{name}, dot segments"] = f"{GRADIO}/file={path.parent}/./../{path.parent.name}/{path.name}"
        targets[f"{name}, twice-encoded detour"] = (f"{GRADIO}/file={temp}/a%252Fb/../{path.parent.name}/"
                                                    f"{path.name}")
    return targets


def test_no_spelling_of_a_path_gets_bob_alices_files_or_the_stored_image(site: Site, work: Work) -> None:
    secret = {work.stored.read_bytes(), work.cache.read_bytes(), work.upload.read_bytes()}
    for name, target in spellings(site, work).items():
        for user in ("bob", None):
            status, body = raw(site, "GET", target, user)
            assert status == 403, (name, user, status)
            assert body not in secret
    # Alice herself gets what she was handed; the stored image only through REST (Gradio does not serve it).
    assert raw(site, "GET", f"{GRADIO}/file={quote(str(work.cache))}", "alice")[0] == 200
    assert raw(site, "GET", f"{GRADIO}/file={quote(str(work.upload))}", "alice")[0] == 200
    assert raw(site, "GET", f"{GRADIO}/file={work.stored}", "alice")[0] == 403
    assert raw(site, "HEAD", f"{GRADIO}/file={work.cache}", "bob")[0] == 403


def test_symlinks_in_gradios_folder_lead_nowhere_new(site: Site, work: Work) -> None:
    images = site.temp / "images-link"  # a link out of Gradio's folder, and one onto Alice's result
    alias = site.temp / "alias.png"
    images.symlink_to(site.settings.images_dir, target_is_directory=True)
    alias.symlink_to(work.cache)
    try:
        day, name = work.stored.parent.name, work.stored.name
        for target in (f"{GRADIO}/file={images}/{day}/{name}", f"{GRADIO}/file={alias}",
                       f"{GRADIO}/file={site.temp}/images-link/../images-link/{day}/{name}"):
            assert raw(site, "GET", target, "bob")[0] == 403, target
        assert raw(site, "GET", f"{GRADIO}/file={alias}", "alice")[0] == 200  # the very file she was handed
    finally:
        images.unlink()
        alias.unlink()


def test_gradio_itself_serves_nothing_from_the_images_folder(site: Site, work: Work) -> None:
    """Behind the gateway, as a second wall: Gradio's own file check refuses the stored image."""
    from gradio.route_utils import file_fetch
    from starlette.exceptions import HTTPException
    from starlette.requests import Request

    gradio_app = site.app.state.janitor.blocks.app
    request = Request({"type": "http", "method": "GET", "path": "/", "headers": [], "query_string": b""})
    with pytest.raises(HTTPException) as refused:
        file_fetch(str(work.stored), request, gradio_app.get_blocks(), gradio_app.uploaded_file_dir)
    assert refused.value.status_code == 403


def test_bob_cannot_use_alices_upload_or_result_as_his_input(site: Site, work: Work) -> None:
    index = fn_index(site, "img2img")
    bob = as_user(site, "bob")
    for path in (work.upload, work.cache):
        image = {"path": str(path), "meta": {"_type": "gradio.FileData"}}
        refused = bob.post(f"{GRADIO}/queue/join", json={"data": [image], "fn_index": index, "session_hash": "bob-1"})
        assert refused.status_code == 422, refused.text
        assert "not one you uploaded or were sent" in refused.json()["detail"]
        for call in ({"data": [image]}, {"init_image": image, "prompt": "his", "negative_prompt": ""}):
            called = bob.post(f"{GRADIO}/call/{'v2/' * ('init_image' in call)}img2img", json=call)
            assert called.status_code == 422, called.text
            assert "not one you uploaded or were sent" in called.json()["detail"]
    own = {"path": str(work.bob_cache), "meta": {"_type": "gradio.FileData"}}
    assert bob.post(f"{GRADIO}/call/v2/img2img", json={"init_image": own, "prompt": "his", "negative_prompt": "",
                                                        "width": 64, "height": 64, "steps": 1}).status_code == 200


# --- sessions, events and uploads ---------------------------------------------------------------------------------

def join(site: Site, user: str, session: str, **changes: Any) -> str:
    """Queue an image job of `user` in `session`; its event id."""
    answer = as_user(site, user).post(f"{GRADIO}/queue/join", json={
        "data": list({**IMAGE, **changes}.values()), "fn_index": fn_index(site, "generate_image"),
        "session_hash": session})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["event_id"])


def results(site: Site, user: str, session: str) -> list[dict[str, Any]]:
    """Read the session's event stream to its end; the process_completed messages."""
    done = []
    with as_user(site, user).stream("GET", f"{GRADIO}/queue/data", params={"session_hash": session}) as stream:
        assert stream.status_code == 200
        for line in stream.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                done += [message] if message.get("msg") == "process_completed" else []
    return done


# POST routes of Gradio that Atelier does not serve at all (api/internal_routes.py).
UNSERVED = (f"{GRADIO}/run/", f"{GRADIO}/api/", f"{GRADIO}/stream/")


def attacks(site: Site, session: str, event: str) -> dict[str, tuple[str, str, dict[str, Any] | None]]:
    """Every Gradio route that names a session or an event, naming Alice's: (method, target, JSON body)."""
    index = fn_index(site, "generate_image")
    data = list(IMAGE.values())
    editor = next(b._id for b in site.app.state.janitor.blocks.blocks.values()
                  if type(b).__name__ == "ImageEditor")
    return {
        "read her stream": ("GET", f"{GRADIO}/queue/data?session_hash={session}", None),
        "read it, encoded": ("GET", f"{GRADIO}/queue/data?session_hash={''.join(f'%{ord(c):02X}' for c in session)}",
                             None),
        "read it, twice named": ("GET", f"{GRADIO}/queue/data?session_hash=mine&session_hash={session}", None),
        "join her session": ("POST", f"{GRADIO}/queue/join", {"data": data, "fn_index": index,
                                                             "session_hash": session}),
        "call in her session": ("POST", f"{GRADIO}/call/generate_image", {"data": data, "session_hash": session}),
        "run in her session": ("POST", f"{GRADIO}/run/generate_image", {"data": data, "session_hash": session}),
        "api in her session": ("POST", f"{GRADIO}/api/generate_image", {"data": data, "session_hash": session}),
        "cancel her job": ("POST", f"{GRADIO}/cancel", {"session_hash": session, "event_id": event,
                                                       "fn_index": index}),
        "cancel it from his session": ("POST", f"{GRADIO}/cancel", {"session_hash": "bobs-own", "event_id": event,
                                                                   "fn_index": index}),
        "reset it": ("POST", f"{GRADIO}/reset", {"event_id": event}),
        "read her result": ("GET", f"{GRADIO}/call/generate_image/{event}", None),
        "read it, v2": ("GET", f"{GRADIO}/call/v2/generate_image/{event}", None),
        "read her session as an event": ("GET", f"{GRADIO}/call/generate_image/{session}", None),
        "open her heartbeat": ("GET", f"{GRADIO}/heartbeat/{session}", None),
        "open it, encoded": ("GET", f"{GRADIO}/heartbeat/{quote(session, safe='').replace('-', '%2d')}", None),
        "feed her stream": ("POST", f"{GRADIO}/stream/{event}", {"data": data}),
        "close her stream": ("POST", f"{GRADIO}/stream/{event}/close", None),
        "her media stream": ("GET", f"{GRADIO}/stream/{session}/0/1/playlist.m3u8", None),
        "deep link to her session": ("GET", f"{GRADIO}/deep_link?session_hash={session}", None),
        "her editor": ("POST", f"{GRADIO}/component_server", {"session_hash": session, "component_id": editor,
                                                              "fn_name": "accept_blobs", "data": {}}),
    }


def test_bob_can_neither_read_take_join_nor_stop_alices_session_or_job(site: Site) -> None:
    session = "alice-session-1"
    event = join(site, "alice", session, steps=12, seed=3)
    for name, (method, target, body) in attacks(site, session, event).items():
        for user in ("bob", None):
            encoded = None if body is None else json.dumps(body).encode()
            status, answer = raw(site, method, target, user, encoded, {"Content-Type": "application/json"})
            if method == "POST" and target.startswith(UNSERVED):
                expected = {404}  # api/internal_routes.py refuses these routes to everyone, before reading a byte
            elif "component_server" in target:
                # Atelier serves the editor's pieces itself (EditorBlobRoute), kept per user, never per session:
                # a login is needed, and a JSON body is no piece.
                expected = {401} if user is None else {415, 422}
            else:
                expected = {403}
            assert status in expected, (name, user, status, answer[:200])
    # Alice's job ran to its end and its result reached her, in her session.
    [done] = results(site, "alice", session)
    assert done["event_id"] == event
    assert done["success"], done
    assert done["output"]["data"][-1]["steps"] == 12
    assert join(site, "alice", session)  # still hers


def test_a_session_gradio_holds_whose_claim_lapsed_is_nobodys_to_take(site: Site) -> None:
    session = "alice-lapsed"
    join(site, "alice", session)  # held: its result waits for her
    claims = site.app.state.services.shared.claims
    with claims._lock:  # as if the claim had lapsed unrenewed
        del claims._owners[f"session:{session}"]
    assert as_user(site, "bob").get(f"{GRADIO}/queue/data", params={"session_hash": session}).status_code == 403
    assert claims.owner(f"session:{session}") is None


def test_a_multipart_editor_blob_in_alices_session_is_refused(site: Site) -> None:
    session = "alice-editor"
    join(site, "alice", session)
    _, target, body = attacks(site, session, "x")["her editor"]
    assert body is not None
    form = {k: str(v) for k, v in body.items() if k != "data"} | {"type": "layer", "index": "0", "id": "layer-1"}
    bob = as_user(site, "bob")
    refused = bob.post(target, data=form, files={"file": ("blob", b"\x89PNG", "image/png")})
    assert refused.status_code == 403, refused.text
    results(site, "alice", session)


def test_bob_cannot_read_alices_call_result_or_watch_her_upload(site: Site) -> None:
    alice, bob = as_user(site, "alice"), as_user(site, "bob")
    started = alice.post(f"{GRADIO}/call/generate_image", json={"data": list({**IMAGE, "seed": 11}.values())})
    event = started.json()["event_id"]
    for target in (f"{GRADIO}/call/generate_image/{event}", f"{GRADIO}/call/history/{event}",
                   f"{GRADIO}/call/v2/generate_image/{event}", f"{GRADIO}/queue/data?session_hash={event}"):
        assert bob.get(target).status_code == 403, target
    answer = alice.get(f"{GRADIO}/call/generate_image/{event}")
    assert "event: complete" in answer.text
    upload_id = "alice-upload-1"
    png = BytesIO()
    Image.new("RGB", (4, 4)).save(png, format="PNG")
    uploaded = alice.post(f"{GRADIO}/upload", params={"upload_id": upload_id},
                          files={"files": ("private-name.png", png.getvalue())})
    assert uploaded.status_code == 200
    assert bob.get(f"{GRADIO}/upload_progress", params={"upload_id": upload_id}).status_code == 403
    refused = bob.post(f"{GRADIO}/upload", params={"upload_id": upload_id}, files={"files": ("x.png", b"x")})
    assert refused.status_code == 403


def contest(users: list[tuple[str, Any]], target: Callable[[Any, str], int]) -> dict[str, list[int]]:
    """Each (user, client) names the same new session at the same moment; the statuses each user got."""
    start = threading.Barrier(len(users))
    statuses: dict[str, list[int]] = {user: [] for user, _ in users}

    def name_it(user: str, http: Any) -> None:
        start.wait()
        statuses[user].append(target(http, user))

    threads = [threading.Thread(target=name_it, args=pair) for pair in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def one_owner(statuses: dict[str, list[int]]) -> None:
    """Every request of one user passed, every request of the other was refused."""
    assert sorted(tuple(sorted(set(codes))) for codes in statuses.values()) == [(200,), (403,)], statuses


def test_two_users_naming_a_new_session_at_once_get_one_owner(site: Site) -> None:
    clients = [(user, as_user(site, user)) for user in ("alice", "bob") * 4]
    for round_ in range(8):
        session = f"contested-{round_}"
        one_owner(contest(clients, lambda http, _, session=session: http.get(
            f"{GRADIO}/deep_link", params={"session_hash": session}).status_code))


def test_a_stream_whose_session_gradio_does_not_hold_ends_cleanly(site: Site) -> None:
    errors: list[logging.LogRecord] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = errors.append  # type: ignore[method-assign]
    server_log = logging.getLogger("uvicorn.error")
    server_log.addHandler(handler)
    try:
        with as_user(site, "alice") as alice:
            answer = alice.get(f"{GRADIO}/queue/data", params={"session_hash": "never-joined"})  # read to its end
    finally:
        server_log.removeHandler(handler)
    assert answer.status_code == 200
    assert json.loads(answer.text.removeprefix("data: "))["session_not_found"] is True
    assert [r.getMessage() for r in errors] == []


def test_the_janitor_keeps_a_session_whose_stream_is_open(site: Site) -> None:
    session = "alice-streaming"
    join(site, "alice", session)
    results(site, "alice", session)  # done: the session is quiet
    janitor = site.app.state.janitor
    with as_user(site, "alice") as alice, alice.stream("GET", f"{GRADIO}/queue/data",
                                                       params={"session_hash": session}) as stream:
        assert stream.status_code == 200
        clock = janitor.clock
        janitor.clock = lambda: clock() + 10 * janitor.grace_s
        try:
            assert session not in janitor.prune_sessions()
        finally:
            janitor.clock = clock


# --- fuzzed: spellings and ids nobody wrote down ------------------------------------------------------------------

SEGMENTS = ["..", ".", "", "a", "%2F", "%252F", "%2e%2e", "%252e%252e", "..%252F..", "\\", "..\\", "%5C", "%255C",
            "%00", "~", "images", "tmp"]
# Folder names that one decoding more or less turns into several folders (or back slashes, or dots).
FOLDERS = ["a%252Fb%252Fc", "a%252fb%252Fc%252Fd%252Fe", "a%25252Fb%25252Fc", "a%2Fb%2Fc", "a%5Cb%5Cc",
           "a%255Cb%255Cc", "%252e%252e%252F%252e%252e", "a%252F%252e%252e%252Fb"]


@hypothesis_settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(before=st.lists(st.sampled_from(SEGMENTS), max_size=4), folder=st.sampled_from(FOLDERS),
       climbs=st.integers(0, 8), after=st.lists(st.sampled_from(SEGMENTS), max_size=3),
       tail=st.sampled_from(["stored", "cache", "upload"]), anchor=st.sampled_from([0, 1, 2, 9]),
       route=st.sampled_from(["file=", "file/"]))
def test_fuzzed_paths_never_get_bob_alices_files(site: Site, work: Work, before: list[str], folder: str,
                                                 climbs: int, after: list[str], tail: str, anchor: int,
                                                 route: str) -> None:
    """A path into Gradio's folder, a folder whose name decodes differently, some climbs, then the way from an
    ancestor of Gradio's folder (`anchor` levels up; far enough is the root) to one of Alice's files."""
    target = {"stored": work.stored, "cache": work.cache, "upload": work.upload}[tail]
    top = ([site.temp, *site.temp.parents])[min(anchor, len(site.temp.parents))]
    parts = [*before, folder, *[".."] * climbs, *after, os.path.relpath(target, top)]
    status, body = raw(site, "GET", f"{GRADIO}/{route}{site.temp}/{'/'.join(parts)}", "bob")
    assert status in (403, 404), status
    assert body not in {work.stored.read_bytes(), work.cache.read_bytes(), work.upload.read_bytes()}


@pytest.fixture(scope="module")
def alices_session(site: Site) -> str:
    session = "alice-fuzzed-session"
    join(site, "alice", session)
    return session


@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(encoded=st.lists(st.booleans(), min_size=1), upper=st.booleans(),
       route=st.sampled_from(["queue/data?session_hash={}", "heartbeat/{}", "call/generate_image/{}",
                              "deep_link?session_hash={}", "stream/{}/0/1/playlist.m3u8"]))
def test_fuzzed_encodings_of_alices_session_are_refused(site: Site, alices_session: str, encoded: list[bool],
                                                        upper: bool, route: str) -> None:
    session = alices_session
    spelled = "".join(f"%{ord(c):02{'X' if upper else 'x'}}" if encoded[i % len(encoded)] else c
                      for i, c in enumerate(session))
    assert raw(site, "GET", f"{GRADIO}/{route.format(spelled)}", "bob")[0] == 403


# --- every route of this Gradio, decided --------------------------------------------------------------------------

# Body fields Gradio's routes accept but never use to find a session or event (it mints event ids itself, and a
# stream's new input goes to the event its path names).
UNUSED = {"event_id": {"/gradio_api/queue/join", "/gradio_api/run/{api_name}", "/gradio_api/api/{api_name}",
                       "/gradio_api/stream/{event_id}"},
          "session_hash": {"/gradio_api/stream/{event_id}"}}
# The routes that take a path or a file name, and why each is safe.
PATH_ROUTES = {
    "/gradio_api/file={path_or_url:path}": "the gateway's file check",
    "/gradio_api/file/{path:path}": "the gateway's file check",
    "/gradio_api/proxy={url_path:path}": "refused by the gateway: Atelier proxies nothing",
    "/static/{path:path}": "Gradio's own package files",
    "/assets/{path:path}": "Gradio's own package files",
    "/svelte/{path:path}": "Gradio's own package files",
    "/gradio_api/custom_component/{id}/{environment}/{type}/{file_name}": "custom components' templates",
    "/gradio_api/run-history/records/{endpoint}/{record_id}/assets/{asset_id}": "the caller's own Hub bucket",
}
IDS = {"session_hash", "event_id", "upload_id"}


def gradio_routes(site: Site) -> Iterator[tuple[str, Any]]:
    """Every API route of the mounted Gradio app, with its full path."""
    from fastapi.routing import APIRoute
    from starlette.routing import Mount

    def walk(routes: list[Any], prefix: str) -> Iterator[tuple[str, Any]]:
        for route in routes:
            if hasattr(route, "original_router"):  # FastAPI's wrapper of an included router
                yield from walk(route.original_router.routes, prefix + route.include_context.prefix)
            elif isinstance(route, APIRoute):
                yield prefix + route.path, route

    gradio_app = next(r.app for r in site.app.routes if isinstance(r, Mount) and r.path == "")
    yield from walk(gradio_app.routes, "")


def ids_taken(route: Any) -> list[tuple[str, str]]:
    """(where, name) of each session, event or upload id a route takes: its path, query or JSON body."""
    from pydantic import BaseModel

    found = []
    dependant = route.dependant
    for where, params in (("path", dependant.path_params), ("query", dependant.query_params)):
        found += [(where, p.name) for p in params if p.name in IDS]
    for param in dependant.body_params:
        model = param.field_info.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            found += [("body", name) for name in model.model_fields if name in IDS]
    return found


def test_every_gradio_route_that_names_an_id_or_a_path_is_judged(site: Site) -> None:
    from api.ownership import named_ids

    paths = set()
    for path, route in gradio_routes(site):
        if ":path}" in path or "{file_name}" in path or "{asset_id}" in path:
            paths.add(path)
        for where, name in ids_taken(route):
            if path.rstrip("/") in UNUSED.get(name, ()) and where == "body":
                continue
            value = f"the-{name}"
            target = path.replace("{" + name + "}", value) if where == "path" else path
            target = target.replace("{api_name}", "generate_image").replace("{run}", "0")
            target = target.replace("{component_id}", "1").replace("{segment_id}.{ext}", "0.ts")
            query = f"{name}={value}".encode() if where == "query" else b""
            body = {name: value} if where == "body" else {}
            for method in route.methods:
                named = [ident for _, ident in named_ids(target, method, query, body)]
                assert value in named, (method, path, where, name)
    assert paths == set(PATH_ROUTES)
