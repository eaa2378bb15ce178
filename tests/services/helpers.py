"""Rows written straight through the models: history and chats in known states, without running a model."""

from __future__ import annotations

import datetime as dt
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
