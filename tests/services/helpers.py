"""Rows written straight through the models: history and chats in known states, without running a model."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storage.models import Conversation, ImageFile, ImageJob, Message


def add_job(user: str, prompt: str, negative: str = "", **fields: Any) -> ImageJob:
    """A finished job with one image row (path x/<id>.png, no file), as the image service would record it."""
    values: dict[str, Any] = {"backend": "diffusers", "model": "m", "width": 64, "height": 64, "steps": 1,
                              "cfg_scale": 7.0, "seed": 5, "seed_used": 5, "sampler": "Euler", "status": "done"}
    values.update(fields)
    job = ImageJob.create(user=user, prompt=prompt, negative_prompt=negative, **values)
    ImageFile.create(job=job, index=0, path=f"x/{job.id}.png", seed=job.seed_used or 0, width=job.width,
                     height=job.height)
    return job


def add_chat(user: str, title: str, *turns: tuple[str, str], updated: dt.datetime | None = None,
             **fields: Any) -> Conversation:
    """A conversation of (content, reasoning) turns, user and assistant in turn."""
    when = updated or dt.datetime.now(dt.UTC)
    chat = Conversation.create(user=user, title=title, created_at=when, updated_at=when, **fields)
    for position, (content, reasoning) in enumerate(turns):
        Message.create(conversation=chat, position=position, role="user" if position % 2 == 0 else "assistant",
                       content=content, reasoning=reasoning)
    return chat


@dataclass
class Kit:
    """Issue 25's services over one fresh database and image store, without models."""

    history: Any
    chat: Any
    collections: Any
    search: Any
    exports: Any
    archive: Any
    settings: Any
    retention: Any
    store: Any


def make_kit(store: Any, server_days: int = 0, max_bytes: int = 1024**3, max_members: int = 10_000) -> Kit:
    """The services as services/container.py wires them, over `store` (the database must be open)."""
    from contracts import TextLimits, TextOptions
    from services.archive import ArchiveService
    from services.chat import ChatService
    from services.collections import CollectionService
    from services.export import ExportService
    from services.history import HistoryService
    from services.retention import Retention
    from services.search import SearchService
    from services.uploads import DEFAULT_LIMITS
    from services.user_settings import UserSettings

    history = HistoryService(Path("/nonexistent"), store)
    chat = ChatService(None, TextLimits(), TextOptions())  # type: ignore[arg-type]  (no replies here)
    collections, search, settings = CollectionService(), SearchService(), UserSettings()
    return Kit(history, chat, collections, search, ExportService(history, collections, search, store),
               ArchiveService(history, store, DEFAULT_LIMITS, max_bytes, max_members, settings), settings,
               Retention(history, chat, server_days, 0, settings), store)


def add_stored_job(store: Any, user: str, prompt: str, images: int = 1, inputs: bool = False,
                   **fields: Any) -> ImageJob:
    """A finished job whose images (and, with `inputs`, an init image) are really in `store`, with A1111's
    parameters in each PNG."""
    from PIL import Image

    from contracts import png_bytes
    from storage.files import Parameters
    from storage.models import input_path

    sha = ""
    if inputs:
        # Kept under the digest of its bytes, as services/images.py keeps a job's inputs (an import checks it).
        picture = Image.new("RGB", (8, 8), tuple(hashlib.sha256(prompt.encode()).digest()[:3]))  # one per prompt
        sha = hashlib.sha256(png_bytes(picture)).hexdigest()
        store.put_png(input_path(sha), picture, None)
    job = ImageJob.create(user=user, prompt=prompt, backend="diffusers", model="m", width=16, height=16, steps=1,
                          cfg_scale=7.0, seed=3, seed_used=3, sampler="Euler", status="done", init_image_sha=sha,
                          mode="img2img" if inputs else "txt2img", **fields)
    for index in range(images):
        key = f"2026-01-01/{job.id:06d}-{index}-{3 + index}.png"
        params = Parameters(prompt=prompt, negative_prompt="", steps=1, sampler="Euler", cfg_scale=7.0,
                            seed=3 + index, width=16, height=16, model="m")
        store.put_png(key, Image.new("RGB", (16, 16), (index * 40 % 256, job.id % 256, 9)), params)
        ImageFile.create(job=job, index=index, path=key, seed=3 + index, width=16, height=16)
    return job


def control_units(store: Any, *colours: str) -> str:
    """A job's ControlNet units (the column's JSON), each with a picture kept in `store` as services/images.py keeps
    one (inputs/<sha256 of its PNG bytes>.png), and a last unit without a picture."""
    from PIL import Image

    from contracts import png_bytes
    from storage.models import input_path

    units = []
    for colour in colours:
        picture = Image.new("RGB", (16, 16), colour)
        sha = hashlib.sha256(png_bytes(picture)).hexdigest()
        store.put_png(input_path(sha), picture, None)
        units.append({"enabled": True, "module": "canny", "model": "tiny-cn-sd15", "weight": 0.8,
                      "image": input_path(sha)})
    return json.dumps([*units, {"enabled": False, "module": "none", "model": "None", "image": ""}])
