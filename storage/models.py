"""Peewee models. The schema itself is created by migrations, never by create_tables at run time."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from peewee import (
    AutoField,
    BigAutoField,
    BigIntegerField,
    BooleanField,
    CharField,
    DateTimeField,
    FloatField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)

from storage.connections import database


def utcnow() -> dt.datetime:
    """Timezone-aware now, stored as UTC."""
    return dt.datetime.now(dt.UTC)


def owned_by(field: Any, user: str | None) -> Any:
    """A where-clause for rows owned by `user`; None (an admin) matches every row."""
    return field == field if user is None else field == user


def input_path(sha: str) -> str:
    """Where a job's input image with this digest is kept, relative to the images dir ("" for no image)."""
    return f"inputs/{sha}.png" if sha else ""


class BaseModel(Model):
    """Binds every model to the one database."""

    class Meta:
        database = database


class ImageJob(BaseModel):
    """One image request (txt2img, img2img or inpaint) and what became of it."""

    id = AutoField()
    user = CharField(default="", index=True)
    created_at = DateTimeField(default=utcnow, index=True)
    finished_at = DateTimeField(null=True)
    backend = CharField()
    model = CharField()
    prompt = TextField()
    negative_prompt = TextField(default="")
    width = IntegerField()
    height = IntegerField()
    steps = IntegerField()
    cfg_scale = FloatField()
    seed = IntegerField()  # as requested: -1 means random
    seed_used = IntegerField(null=True)
    sampler = CharField()
    batch_count = IntegerField(default=1)
    # running | done | cancelled | failed
    status = CharField(default="running", index=True)
    error = TextField(default="")
    duration_s = FloatField(null=True)
    cached = BooleanField(default=False)
    # Set on jobs whose result may be reused for an identical request (a fixed seed); see services/cache.py.
    cache_key = CharField(null=True)
    extra = TextField(default="{}")  # JSON: anything a backend wants to keep (device, notes)
    # The replica running the job (ATELIER_REPLICA_NAME; migration 006): after a crash, that replica's restart
    # marks it failed even while other replicas run.
    replica = CharField(default="", index=True)
    # Issue 13 (migration 005): the modes, in AUTOMATIC1111's names and defaults.
    mode = CharField(default="txt2img")  # txt2img | img2img | inpaint
    # The input images by the sha256 of their PNG bytes ("" for none); the files are <images dir>/inputs/<sha>.png.
    init_image_sha = CharField(default="")
    mask_sha = CharField(default="")
    denoising_strength = FloatField(default=0.75)
    resize_mode = IntegerField(default=0)
    mask_blur = IntegerField(default=4)
    inpainting_fill = IntegerField(default=1)
    inpaint_full_res = BooleanField(default=False)
    inpaint_full_res_padding = IntegerField(default=32)
    inpainting_mask_invert = IntegerField(default=0)
    enable_hr = BooleanField(default=False)
    hr_scale = FloatField(default=2.0)
    hr_upscaler = CharField(default="Latent")
    hr_second_pass_steps = IntegerField(default=0)
    # The checkpoint and VAE asked for ("" = the default); `model` above is the one that ran, as PNGs name it.
    checkpoint = CharField(default="")
    vae = CharField(default="")
    # JSON list of ControlNet units in sd-webui-controlnet's names, each picture as its inputs/ path (migration cn01).
    controlnet = TextField(default="[]")
    # A1111's SDXL refiner ("" = none) and its switch point (migration rr01), so that History and Reuse give it back.
    refiner_checkpoint = CharField(default="")
    refiner_switch_at = FloatField(null=True)
    # Issue 25 (migration 020): kept by retention, listed first when the user filters by it.
    favourite = BooleanField(default=False)

    def settings_dict(self) -> dict[str, Any]:
        """The request's settings and the job's model, time and cache flag, as JSON-ready data; input images as
        paths relative to the images dir ("" for none), so that the job can be reopened."""
        return {
            "prompt": self.prompt, "negative_prompt": self.negative_prompt, "width": self.width,
            "height": self.height, "steps": self.steps, "cfg_scale": self.cfg_scale, "sampler": self.sampler,
            "batch_count": self.batch_count, "model": self.model, "duration_s": self.duration_s,
            "cached": bool(self.cached), "mode": self.mode,
            "init_image": input_path(self.init_image_sha), "mask": input_path(self.mask_sha),
            "denoising_strength": self.denoising_strength, "resize_mode": self.resize_mode,
            "mask_blur": self.mask_blur, "inpainting_fill": self.inpainting_fill,
            "inpaint_full_res": bool(self.inpaint_full_res), "inpaint_full_res_padding": self.inpaint_full_res_padding,
            "inpainting_mask_invert": self.inpainting_mask_invert, "enable_hr": bool(self.enable_hr),
            "hr_scale": self.hr_scale, "hr_upscaler": self.hr_upscaler,
            "hr_second_pass_steps": self.hr_second_pass_steps, "checkpoint": self.checkpoint, "vae": self.vae,
            "controlnet": json.loads(self.controlnet or "[]"),
            # As ImageRequest.settings(): the refiner's fields only when the job had one.
            **({"refiner_checkpoint": self.refiner_checkpoint, "refiner_switch_at": self.refiner_switch_at}
               if self.refiner_checkpoint else {}),
        }

    def extra_dict(self) -> dict[str, Any]:
        """The `extra` column decoded."""
        return json.loads(self.extra or "{}")


class ImageFile(BaseModel):
    """One image of a job, stored under the images dir."""

    id = AutoField()
    job = ForeignKeyField(ImageJob, backref="files", on_delete="CASCADE")
    index = IntegerField()
    path = CharField()  # relative to the images dir
    seed = IntegerField()
    width = IntegerField()
    height = IntegerField()


class Conversation(BaseModel):
    """One chat: its messages in order, owned by a user."""

    id = AutoField()
    user = CharField(default="")
    title = CharField(default="")
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)
    favourite = BooleanField(default=False)  # migration 020


class Message(BaseModel):
    """One turn. For the assistant, `content` is the answer and `reasoning` the thinking, kept apart."""

    id = AutoField()
    conversation = ForeignKeyField(Conversation, backref="messages", on_delete="CASCADE")
    position = IntegerField()
    role = CharField()  # user | assistant
    content = TextField(default="")
    reasoning = TextField(default="")
    # done | cancelled (stopped: the partial reply is kept) | failed
    status = CharField(default="done")
    error = TextField(default="")
    finish_reason = CharField(default="")  # stop | length | cancelled
    model = CharField(default="")
    params = TextField(default="{}")  # JSON: temperature, top_p, max_new_tokens, thinking_budget, seed
    prompt_tokens = IntegerField(default=0)
    completion_tokens = IntegerField(default=0)
    reasoning_tokens = IntegerField(default=0)
    reasoning_s = FloatField(null=True)
    duration_s = FloatField(null=True)
    created_at = DateTimeField(default=utcnow)
    cache_key = CharField(null=True)
    cached = BooleanField(default=False)

    class Meta:
        indexes = ((("conversation", "position"), True),)

    def params_dict(self) -> dict[str, Any]:
        """The `params` column decoded."""
        return json.loads(self.params or "{}")


class ReplyDraft(BaseModel):
    """A reply while it streams, its text so far saved now and then: after a crash it becomes a failed reply
    that keeps that text (services/chat.py, recover), instead of vanishing or staying unfinished forever."""

    id = AutoField()
    conversation = ForeignKeyField(Conversation, on_delete="CASCADE")
    answers = ForeignKeyField(Message, on_delete="CASCADE")  # the user's turn this reply answers
    mode = CharField()  # send | regenerate | edit
    content = TextField(default="")
    reasoning = TextField(default="")
    model = CharField(default="")
    params = TextField(default="{}")
    started_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)
    replica = CharField(default="", index=True)  # the replica streaming the reply (migration 006)


class Account(BaseModel):
    """A person who may log in; the name is what jobs and conversations are owned by."""

    id = AutoField()
    name = CharField(unique=True)
    password_hash = CharField()
    is_admin = BooleanField(default=False)
    created_at = DateTimeField(default=utcnow)
    disabled = BooleanField(default=False)  # may not log in; keeps the account and its work (migration 031)


class ApiKey(BaseModel):
    """A key that stands for a user on the APIs (Authorization: Bearer); only its sha256 digest is kept."""

    id = AutoField()
    user = CharField()  # the account's name
    name = CharField()  # the label the user gave it, unique per user
    digest = CharField(unique=True)
    prefix = CharField()  # its first characters, so that a list tells keys apart
    created_at = DateTimeField(default=utcnow)
    last_used_at = DateTimeField(null=True)

    class Meta:
        indexes = ((("user", "name"), True),)


class UserOption(BaseModel):
    """One per-user API default (AUTOMATIC1111's options: sd_model_checkpoint, sd_vae), as JSON."""

    id = AutoField()
    user = CharField()
    name = CharField()
    value = TextField()
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("user", "name"), True),)


class ServerSecret(BaseModel):
    """A random secret every replica shares (made once, by whichever replica needs it first)."""

    id = AutoField()
    name = CharField(unique=True)
    value = CharField()


class RequestLog(BaseModel):
    """One request or one job, however it came in: who, from where, what, how it ended and what it cost (issue 26;
    written in batches by services/request_log.py)."""

    id = BigAutoField()
    started_at = DateTimeField(default=utcnow)
    request_id = CharField(default="")  # the X-Request-ID of the request (api/request_id.py)
    # The account; for a login, the name tried (success or not); '' for anonymous and single-user requests.
    user = CharField(default="")
    client = CharField(default="")  # the client's address, X-Forwarded-For believed only from trusted proxies
    route = CharField(default="")  # an HTTP path or a Gradio API name
    kind = CharField()  # image | chat | read | login | upload | admin
    status = CharField()  # done | failed | refused | cancelled
    reason = TextField(default="")  # why it failed, or which limit refused it
    http_status = IntegerField(null=True)
    duration_s = FloatField(null=True)
    queue_wait_s = FloatField(null=True)
    model = CharField(default="")
    images = IntegerField(default=0)
    prompt_tokens = IntegerField(default=0)
    completion_tokens = IntegerField(default=0)
    gpu_s = FloatField(default=0.0)  # seconds on the model's device (a shared batch's time split by image)
    replica = CharField(default="")
    job_id = BigIntegerField(null=True)  # the image job or the assistant message

    class Meta:
        table_name = "requestlog"


class UserLimit(BaseModel):
    """An admin's overrides of one user's rate limits and queue quota (None keeps the server's setting)."""

    id = AutoField()
    account = ForeignKeyField(Account, unique=True, on_delete="CASCADE")
    image_jobs = CharField(null=True)  # a `limits` rate such as "10/minute"
    chat_messages = CharField(null=True)
    uploads = CharField(null=True)
    reads = CharField(null=True)
    queue_quota = IntegerField(null=True)
    updated_at = DateTimeField(default=utcnow)
    updated_by = CharField(default="")

    class Meta:
        table_name = "userlimit"


class Collection(BaseModel):
    """A named set of image jobs a user gathers (migration 020); the name is unique per user."""

    id = AutoField()
    user = CharField(default="")
    name = CharField()
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("user", "name"), True),)


class CollectionItem(BaseModel):
    """One job in a collection; it goes with the job or the collection."""

    id = AutoField()
    collection = ForeignKeyField(Collection, backref="items", on_delete="CASCADE")
    job = ForeignKeyField(ImageJob, backref="collection_items", on_delete="CASCADE")
    added_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("collection", "job"), True),)


class UserSetting(BaseModel):
    """A user's own setting (retention days, …) by key, its value as JSON (migration 020); owned by the name, as
    jobs are, so that a loopback server's one user ("") has settings too."""

    id = AutoField()
    user = CharField(default="")
    key = CharField()
    value = TextField(default="null")
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("user", "key"), True),)


# In dependency order: storage/transfer.py copies them so, and a row's references are always there before it.
ALL_MODELS: list[type[BaseModel]] = [ImageJob, ImageFile, Conversation, Message, ReplyDraft, Account, ApiKey,
                                     UserOption, ServerSecret, RequestLog, UserLimit, Collection, CollectionItem,
                                     UserSetting]
