"""Loaded into the server process by bench/_server.py's bootstrap, before app.py runs; the app itself carries
no benchmark code.

- Phase probes: wrap the app's own steps (pipeline, preview, PNG, database, the job thread, Gradio's cache
  writes) with timers and append each timing as one JSON line. Times are time.perf_counter(), the system-wide
  monotonic clock on Linux, so the benchmark lines them up with its own.
- The raw side: a loopback socket on which the benchmark asks for the raw library call, run in this process on
  the model object the app loaded (captured when its backend loads).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import os
import socket
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import _null_model

_lock = threading.Lock()
_path = ""
BACKENDS: dict[str, Any] = {}  # "image" / "text" -> the app's loaded backend object


def _record(name: str, t0: float, t1: float, cpu: float | None = None) -> None:
    row = {"name": name, "t0": t0, "t1": t1, **({"cpu": cpu} if cpu is not None else {})}
    with _lock, open(_path, "a") as out:
        out.write(json.dumps(row) + "\n")


def _timed(owner: Any, attr: str, name: str) -> None:
    """Replace owner.attr with a wrapper that records how long each call took."""
    original = getattr(owner, attr)  # AttributeError when the app changed: the probe list must follow it
    static = isinstance(inspect.getattr_static(owner, attr), staticmethod)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0, c0 = time.perf_counter(), time.thread_time()  # the calling thread's CPU too
        try:
            return original(*args, **kwargs)
        finally:
            _record(name, t0, time.perf_counter(), time.thread_time() - c0)

    setattr(owner, attr, staticmethod(wrapper) if static else wrapper)


def _timed_async(owner: Any, attr: str, name: str) -> None:
    """As _timed, for a coroutine function."""
    original = getattr(owner, attr)

    @functools.wraps(original)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return await original(*args, **kwargs)
        finally:
            _record(name, t0, time.perf_counter())

    setattr(owner, attr, wrapper)


def _capture(cls: Any, kind: str) -> None:
    """Remember the backend object of `kind` once it has loaded."""
    load = cls.load

    @functools.wraps(load)
    def capturing(self: Any, report: Any) -> None:
        load(self, report)
        BACKENDS[kind] = self
        if kind == "image" and (null := _null_model.settings()) is not None:
            _null_model.install(self.pipe, *null)

    cls.load = capturing


def install_gradio_probes(path: str) -> None:
    """Wrap Gradio's own phases (the plain app in bench/_vanilla_gradio.py has them too); timings go to `path`."""
    global _path
    _path = path
    import gradio as gr
    from gradio import processing_utils
    from gradio.blocks import Blocks
    from gradio.queueing import Queue

    _timed(processing_utils, "save_pil_to_cache", "gradio: encode preview into its cache")
    _timed(processing_utils, "save_file_to_cache", "gradio: copy result file into its cache")
    _timed_async(Queue, "push", "gradio: queue/join (validator, enqueue)")
    _timed_async(Blocks, "postprocess_data", "gradio: postprocess (all messages)")
    for component in (gr.Image, gr.Markdown, gr.Gallery, gr.JSON):
        _timed(component, "postprocess", f"gradio: {component.__name__}.postprocess (all messages)")
    send_message = Queue.send_message

    def send_probe(self: Any, event: Any, message: Any) -> None:
        send_message(self, event, message)
        now = time.perf_counter()
        kind = getattr(message, "msg", "?")
        _record(f"message sent: {getattr(kind, 'value', kind)}", now, now)

    Queue.send_message = send_probe  # type: ignore[method-assign]


def install_probes(path: str) -> None:
    """Wrap the app's phases; timings go to `path`."""
    install_gradio_probes(path)
    import pipelines.diffusers_backend as backend
    import services.images as images

    try:  # the module that calls latents_to_preview: the backend's runner since the backends were split
        import pipelines.diffusers_running as previews
    except ImportError:  # an older checkout (a comparison): the backend module itself
        previews = backend
    import storage.blobs as blobs
    from services.jobs import JobHandle

    _timed(backend.DiffusersBackend, "generate", "pipeline call (diffusers, incl. previews)")
    # Jobs reach the pipeline through the batcher, as a batch (of one when alone).
    _timed(backend.DiffusersBackend, "generate_batch", "pipeline call (generate_batch, incl. previews)")
    _timed(previews, "latents_to_preview", "preview: latents to RGB")
    _timed(images.ImageService, "_create_job", "db: create the job row")
    _timed(images.ImageService, "_finish", "db: final status + file rows")
    _timed(blobs, "write_png_atomic", "png: encode + write + fsync")
    _timed(images.ImageService, "run", "job thread (lock, load check, pipeline, files, db)")

    update = JobHandle.update

    def update_probe(self: Any, **changes: Any) -> None:
        update(self, **changes)
        if changes.get("status") in ("done", "cancelled", "failed"):
            now = time.perf_counter()
            _record("job finished (handle updated)", now, now)

    JobHandle.update = update_probe  # type: ignore[method-assign]


def serve_raw(target: str, port_file: str) -> None:
    """Answer each JSON line from the benchmark with fn(BACKENDS, request), fn being `target` ("module:fn")."""
    module, name = target.split(":")
    fn = getattr(importlib.import_module(module), name)
    server = socket.create_server(("127.0.0.1", 0))
    Path(port_file).write_text(str(server.getsockname()[1]))

    def loop() -> None:
        conn, _ = server.accept()
        with conn, conn.makefile("rw") as stream:
            for line in stream:
                try:
                    answer = fn(BACKENDS, json.loads(line))
                except Exception:
                    answer = {"error": traceback.format_exc()}
                stream.write(json.dumps(answer) + "\n")
                stream.flush()

    threading.Thread(target=loop, name="bench-raw-side", daemon=True).start()


def install(probes: str | None, raw: str | None, raw_port_file: str | None) -> None:
    """Probes when `probes` names a file; the raw side when `raw` names a function."""
    from pipelines.diffusers_backend import DiffusersBackend
    from pipelines.transformers_backend import TransformersTextBackend

    _capture(DiffusersBackend, "image")
    _capture(TransformersTextBackend, "text")
    if profile := os.environ.get("ATELIER_BENCH_CPU_PROFILE"):
        import _cpu_profile

        if os.environ.get("ATELIER_BENCH_PROFILE_KIND") == "cprofile":
            _cpu_profile.start_main_thread_profile(profile)
        else:
            _cpu_profile.start(profile)
    if probes:
        install_probes(probes)
    if raw and raw_port_file:
        serve_raw(raw, raw_port_file)
