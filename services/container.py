"""Builds every service from settings: the one place that knows how the parts fit together."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts import ImageLimits, TextLimits, TextOptions
from pipelines.compile import CompileOptions
from pipelines.image_base import ImageBackend, create_image_backend
from pipelines.text_base import TextBackend, create_text_backend
from services import metrics
from services.accounts import AccountService
from services.admin import AdminService
from services.api_keys import ApiKeyService
from services.archive import ArchiveService
from services.cache import ResultCache
from services.catalog import Catalog
from services.chat import ChatService
from services.collections import CollectionService
from services.export import ExportService
from services.history import HistoryService
from services.image_links import ImageLinks
from services.images import ImageService
from services.model_slots import Deferred, ModelChoice, ModelSlot
from services.preferences import Preferences
from services.replicas import ReplicaWatch
from services.request_log import RequestLog
from services.residency import Residency
from services.retention import Retention
from services.running import RunningJobs
from services.search import SearchService
from services.uploads import UploadLimits, Uploads
from services.user_limits import Limits, UserLimits
from services.user_settings import UserSettings
from settings import Profile, Settings
from storage.blobs import BlobStore, StorageUnavailable, open_store
from storage.db import ReplicaNameTaken, join_replicas, open_database
from storage.shared_state import SharedState, open_shared_state

log = logging.getLogger(__name__)

TINY_SD_NAME = "atelier-tiny-sd (random weights, makes noise)"
# The tiny profile's checkpoints under <data>/models, offered by name (tiny-sd is also the default), and a tiny
# ControlNet for each under <data>/controlnet: built offline on the first load (pipelines/tiny.py).
TINY_CHECKPOINTS = ("tiny-sd", "tiny-sdxl")
TINY_CONTROLNETS = {"tiny-cn-sd15": "tiny-sd", "tiny-cn-sdxl": "tiny-sdxl"}
TINY_R1_NAME = "atelier-tiny-r1-gptq-4bit (random weights, writes gibberish)"


@dataclass
class Services:
    """Everything the UI and the API call."""

    settings: Settings
    accounts: AccountService
    images: ImageService
    history: HistoryService
    chat: ChatService
    image_slot: ModelSlot[ImageBackend]
    text_slot: ModelSlot[TextBackend]
    residency: Residency
    catalog: Catalog
    uploads: Uploads  # read_image(data, field) under the configured upload limits
    torch_threads: TorchThreads  # intra_op / inter_op (ATELIER_TORCH_THREADS), applied before any model is built
    replicas: ReplicaWatch  # recovers the work of replicas that died and never came back (PostgreSQL only)
    shared: SharedState  # rate limits, the quota's ledger and login tokens: process memory, or the replicas' Redis
    request_log: RequestLog  # every request's and job's row, written in batches (issue 26)
    limits: UserLimits  # each user's effective rate limits and queue quota, an admin's overrides applied
    admin: AdminService  # the admin panel's actions (issue 26)
    running: RunningJobs  # the image jobs and replies running now, by user, from every way in
    api_keys: ApiKeyService  # keys that stand for a user on the APIs
    preferences: Preferences  # per-user API defaults (AUTOMATIC1111's options)
    image_links: ImageLinks  # expiring links to stored images (OpenAI's image URLs)
    # The configured default models: their labels (as the health page and PNGs name them), and the image model's
    # source (a hub id or a folder), which the APIs list beside the checkpoints of the models folder.
    default_models: dict[str, str]
    # Issue 25: search, organise, export and import, retention (per user, never across users).
    search: SearchService
    collections: CollectionService
    exports: ExportService
    archive: ArchiveService
    user_settings: UserSettings
    retention: Retention

    def health(self) -> dict[str, Any]:
        """Server and model states for /api/health."""
        return {
            "status": "ok",
            "profile": self.settings.resolved_profile.value,
            "replica": self.settings.resolved_replica_name,
            "models": {"image": self.image_slot.status().as_dict(), "text": self.text_slot.status().as_dict()},
            "memory": self.residency.describe(),
            "torch_threads": self.torch_threads.describe(),
            "replica_watch": self.replicas.describe(),
            "request_log": self.request_log.describe(),
        }

    def memory(self) -> dict[str, Any]:
        """The machine's RAM and, with CUDA, the GPU memory torch holds (AUTOMATIC1111's /sdapi/v1/memory)."""
        import psutil

        from pipelines.devices import gpu_memory

        ram = psutil.virtual_memory()
        gpu = gpu_memory()
        return {"ram": {"free": ram.available, "used": ram.total - ram.available, "total": ram.total},
                "cuda": {"system": gpu} if gpu is not None else {"error": "no CUDA device is in use"}}

    def warm_up(self) -> None:
        """Start loading models in the background."""
        self.image_slot.warm_up()
        self.text_slot.warm_up()

    def shut_down(self) -> None:
        """Stop background work (the request log writes what it holds first), and withdraw this replica's jobs from
        the shared quota."""
        self.residency.stop()
        self.replicas.stop()
        self.retention.stop()
        self.request_log.stop()
        self.shared.close()


class TorchThreads:
    """torch's intra-op and inter-op thread counts for this process, applied once, just before the first backend is
    built: that is where torch is first imported, and no model runs before it."""

    def __init__(self, intra_op: int, inter_op: int) -> None:
        self.wanted = {"intra_op": intra_op, "inter_op": inter_op}
        self.in_effect: dict[str, int] | None = None
        self._lock = threading.Lock()

    @classmethod
    def of(cls, settings: Settings) -> TorchThreads:
        """The counts the settings ask for (ATELIER_TORCH_THREADS, ATELIER_TORCH_INTEROP_THREADS)."""
        return cls(settings.resolved_torch_threads, settings.torch_interop_threads)

    def apply(self) -> None:
        """Set them (the first time only)."""
        with self._lock:
            if self.in_effect is None:
                from pipelines.devices import apply_threads

                self.in_effect = apply_threads(self.wanted["intra_op"], self.wanted["inter_op"])

    def describe(self) -> dict[str, int]:
        """For /api/health: those in effect once applied, the ones asked for until then."""
        return dict(self.in_effect or self.wanted)


def _gpu_memory() -> dict[str, int] | None:
    """The GPU memory torch holds (pipelines.devices.gpu_memory); None while no model has imported torch: then it
    holds none, and a metrics scrape must not import it (~180 MiB and ~1.5 s)."""
    if "torch" not in sys.modules:
        return None
    from pipelines.devices import gpu_memory

    return gpu_memory()


def deferred(threads: TorchThreads, build: Callable[[], Any]) -> Deferred[Any]:
    """A backend built on first use (services.model_slots.Deferred), with the torch threads set first."""

    def build_with_threads() -> Any:
        threads.apply()
        return build()

    return Deferred(build_with_threads)


def _local_name(model: str) -> str | None:
    """A model given as a local folder or file by its name, as per-job checkpoints are shown: the UI, history and
    the PNGs anyone may be sent never carry this machine's absolute path. None for a hub id."""
    path = Path(model).expanduser()
    return path.name if model.startswith((".", "/", "~")) or path.exists() else None


def _slot(kind: str, backend_name: str, backend: Any, label: str,
          prepare: Callable[[Callable[[str], None]], None] | None,
          choice: ModelChoice[Any] | None = None) -> ModelSlot[Any]:
    """A slot whose load first runs `prepare` (building a tiny model on first use), then the backend's load."""

    def load(b: Any, report: Callable[[str], None]) -> None:
        if prepare is not None:
            prepare(report)
        b.load(report)

    return ModelSlot(kind, backend, load, model=label, backend_name=backend_name,
                     describe=lambda b: dict(b.describe()), choice=choice)


def _compile_options(settings: Settings) -> CompileOptions:
    return CompileOptions(enabled=settings.compile, mode=settings.compile_mode, scope=settings.compile_scope,
                          backend=settings.compile_backend, dynamic=settings.compile_dynamic)


def _catalog(settings: Settings) -> Catalog:
    tiny = settings.image_backend == "diffusers" and settings.resolved_image_model == "tiny"
    default = str(settings.models_dir / "tiny-sd") if tiny else settings.resolved_image_model
    return Catalog(settings.models_dir, settings.loras_dir, settings.vae_dir, settings.upscalers_dir,
                   settings.controlnet_dir, default_model=default, builtin=TINY_CHECKPOINTS if tiny else ())


def _model_choice(catalog: Catalog, default: str, default_label: str | None) -> ModelChoice[Any]:
    """Per-job checkpoint/VAE for the diffusers backend: names from the catalog, "" for the configured default."""

    def resolve(model: str, vae: str) -> tuple[str, str]:
        source = str(catalog.resolve_model(model)) if model else default
        return source, str(catalog.resolve_vae(vae)) if vae else ""

    def apply(backend: Any, key: tuple[str, str]) -> str:
        source, vae = key
        label = (default_label or default) if source == default else Path(source).name
        backend.use_checkpoint(source, label, vae)
        return label + (f" + VAE {Path(vae).name}" if vae else "")

    return ModelChoice(resolve, apply)


def _tiny_sd_dir(settings: Settings) -> Path | None:
    """Where the tiny Stable Diffusion is built, when it is the image model."""
    local = settings.image_backend == "diffusers"
    return settings.models_dir / "tiny-sd" if local and settings.resolved_image_model == "tiny" else None


def build_tiny_images(settings: Settings, report: Callable[[str], None]) -> None:
    """The tiny profile's image models, each built once: tiny-sd, tiny-sdxl and a tiny ControlNet for each (a few
    seconds of CPU in all; a model already there, or linked in by the tests, is kept)."""
    from pipelines.tiny import ensure_tiny_controlnet, ensure_tiny_sd, ensure_tiny_sdxl

    models = settings.models_dir
    if not (models / "tiny-sd").exists() or not (models / "tiny-sdxl").exists():
        report("building the tiny Stable Diffusion and SDXL models (first use only)")
    ensure_tiny_sd(models / "tiny-sd", report=report)
    ensure_tiny_sdxl(models / "tiny-sdxl", report=report)
    for name, base in TINY_CONTROLNETS.items():
        ensure_tiny_controlnet(settings.controlnet_dir / name, models / base, report=report)


def _image_slot(settings: Settings, catalog: Catalog | None = None,
                threads: TorchThreads | None = None) -> ModelSlot[ImageBackend]:
    model = settings.resolved_image_model
    local = settings.image_backend == "diffusers"
    tiny_dir = _tiny_sd_dir(settings)
    options: dict[str, Any] = {}
    if settings.image_backend == "a1111":
        # A remote WebUI loads no local weights; an explicit image model is only checked against its checkpoint.
        model = settings.image_model or f"AUTOMATIC1111 at {settings.a1111_url}"
        options = {
            "url": settings.a1111_url,
            "auth": settings.a1111_auth.get_secret_value() if settings.a1111_auth else None,
            "model": settings.image_model,
            "timeout_s": settings.remote_timeout_s,
            "job_timeout_s": settings.a1111_job_timeout_s,
            "poll_s": settings.a1111_poll_s,
        }
    elif local:
        defaults = settings.image_defaults
        options = {
            "model": str(tiny_dir or model),
            "display_name": TINY_SD_NAME if tiny_dir else _local_name(model),
            "memory_mode": settings.memory_mode,
            "attention_slicing": settings.attention_slicing,
            "vae_slicing": settings.vae_slicing,
            "vae_tiling": settings.vae_tiling,
            "preview_every": settings.preview_every,
            # The UI streams at most one update per interval: a preview computed more often is never seen.
            "preview_interval_s": settings.stream_interval_s,
            "compile": _compile_options(settings),
            # The warm-up compiles at the profile's default size and guidance, the shape most jobs have.
            "compile_warmup": (int(defaults["width"]), int(defaults["height"]), float(defaults["cfg_scale"])),
            "lora_dir": str(settings.loras_dir),
            "upscalers_dir": settings.upscalers_dir,
            "vae_dir": settings.vae_dir,
            "controlnet_dir": settings.controlnet_dir,
            "annotators_dir": settings.annotators_dir,
        }

    def build_tiny(report: Callable[[str], None]) -> None:
        build_tiny_images(settings, report)

    catalog = catalog or _catalog(settings)
    if local:  # the refiner is another checkpoint of the catalog, by the names a job gives
        options["resolve_refiner"] = lambda name: str(catalog.resolve_model(name))
    choice = _model_choice(catalog, options["model"], options["display_name"]) if local else None
    threads = threads or TorchThreads.of(settings)
    backend = deferred(threads, lambda: create_image_backend(settings.image_backend, **options))
    return _slot("image", settings.image_backend, backend, options.get("display_name") or model,
                 build_tiny if tiny_dir else None, choice)


def _text_slot(settings: Settings, threads: TorchThreads | None = None) -> ModelSlot[TextBackend]:
    model = settings.resolved_text_model
    local = settings.text_backend == "transformers"
    tiny_dir = settings.models_dir / "tiny-r1-gptq" if local and model == "tiny-gptq" else None
    options: dict[str, Any] = {}
    if settings.text_backend == "openai":
        # A remote server loads no local weights; the model is the setting, else the server's first one.
        model = settings.openai_model or f"model served at {settings.openai_base_url}"
        options = {
            "base_url": settings.openai_base_url,
            "api_key": settings.openai_api_key.get_secret_value() if settings.openai_api_key else None,
            "model": settings.openai_model,
            "timeout_s": settings.remote_timeout_s,
            "max_connections": max(16, settings.resolved_text_concurrency * 2),
        }
    elif local:
        options = {"model": str(tiny_dir or model), "display_name": TINY_R1_NAME if tiny_dir else _local_name(model)}
        # The replies ChatService lets run at once share the model's forward passes (continuous batching).
        options["max_batch"] = settings.resolved_text_concurrency
        options.update(gptq_backend=settings.gptq_backend, cache=settings.text_cache, compile=settings.text_compile)

    def build_tiny(report: Callable[[str], None]) -> None:
        from pipelines.tiny import ensure_tiny_r1_gptq

        report("building the tiny DeepSeek-R1 and its 4-bit GPTQ copy (first use only)")
        ensure_tiny_r1_gptq(tiny_dir, source=settings.models_dir / "tiny-r1", report=report)

    threads = threads or TorchThreads.of(settings)
    backend = deferred(threads, lambda: create_text_backend(settings.text_backend, **options))
    return _slot("text", settings.text_backend, backend, options.get("display_name") or model,
                 build_tiny if tiny_dir else None)


def _recover(images: ImageService, chat: ChatService, only_replica: str | None = None) -> None:
    """Start-up housekeeping: jobs and replies a crash left unfinished become failures that say so (only this
    replica's own when other replicas are running: theirs may still be under way)."""
    if recovered := images.recover(only_replica):
        log.warning("marked %d interrupted image job(s) as failed", recovered)
    if interrupted := chat.recover(only_replica):
        log.warning("kept %d interrupted chat reply(ies) as failed, with their partial text", interrupted)


def image_store(settings: Settings) -> BlobStore:
    """The local images folder, or the S3 bucket ATELIER_STORAGE_URL names."""
    secret = settings.s3_secret_access_key
    return open_store(settings.storage_url, settings.images_dir, settings.image_cache_dir,
                      endpoint_url=settings.s3_endpoint_url, region=settings.s3_region,
                      access_key_id=settings.s3_access_key_id,
                      secret_access_key=secret.get_secret_value() if secret else None)


class CannotStart(RuntimeError):
    """Storage the settings name cannot be had as configured (a bucket that is missing and may not be created, a
    replica name another running replica holds); the message says what to fix."""


def build_services(settings: Settings) -> Services:
    """Open storage, create backends (not loaded yet) and the services over them; CannotStart, saying what to fix,
    when the storage the settings name cannot be had."""
    try:
        return _assemble(settings)
    except (StorageUnavailable, ReplicaNameTaken) as err:
        raise CannotStart(str(err)) from err


def _assemble(settings: Settings) -> Services:
    settings.ensure_dirs()
    # Once, before any model runs (when the first backend is built): every job in this process uses these pools.
    threads = TorchThreads.of(settings)
    db = open_database(settings.database_location, settings.database_pool_size)
    limits = ImageLimits(min_size=settings.min_size, max_size=settings.max_size, max_steps=settings.max_steps,
                         max_batch_count=settings.max_batch_count, max_prompt_chars=settings.max_prompt_chars)
    catalog = _catalog(settings)
    image_slot = _image_slot(settings, catalog, threads)
    cache = ResultCache(settings.cache_enabled, settings.cache_max_age_s, settings.cache_max_entries)
    store = image_store(settings)
    upload_limits = UploadLimits.from_settings(settings)
    request_log = RequestLog(settings.request_log, settings.request_log_max_pending,
                             settings.request_log_retention_days)
    running = RunningJobs()  # the image jobs and replies of every way in, by user (services/running.py)
    images = ImageService(image_slot, settings.images_dir, limits, defaults=settings.image_defaults, cache=cache,
                          max_batch_images=settings.resolved_max_batch_images, store=store,
                          upload_limits=upload_limits, catalog=catalog,
                          remote_names=settings.image_backend != "diffusers", replica=settings.resolved_replica_name,
                          request_log=request_log, running=running)
    text_slot = _text_slot(settings, threads)
    defaults = TextOptions(temperature=settings.temperature, top_p=settings.top_p,
                           max_new_tokens=settings.resolved_max_new_tokens,
                           thinking_budget=settings.resolved_thinking_budget)
    chat = ChatService(text_slot, TextLimits(max_new_tokens=settings.max_new_tokens_limit,
                                             max_message_chars=settings.max_message_chars), defaults, cache,
                       concurrency=settings.resolved_text_concurrency, replica=settings.resolved_replica_name,
                       request_log=request_log, running=running)
    if not join_replicas(db, lambda: _recover(images, chat), name=settings.resolved_replica_name):
        # Others are running: only what this replica (by its name) left unfinished before it stopped is surely
        # over; another stopped replica's work is recovered by its own restart, or when a replica starts alone.
        _recover(images, chat, only_replica=settings.resolved_replica_name)
    residency = Residency([image_slot, text_slot], settings.resolved_idle_policy, settings.keep_alive_s)
    if settings.resolved_profile is Profile.TINY:
        log.warning("tiny profile: the models have random weights and make noise; they exist for tests and demos")
    watch_metrics(images, [image_slot, text_slot], request_log)
    shared = open_shared_state(settings)
    # An admin's limit change reaches every replica within a second (a generation counter in the shared state).
    user_limits = UserLimits(default_limits(settings), shared.generations)
    accounts, history = AccountService(), HistoryService(settings.images_dir, store)
    api_keys = ApiKeyService()
    admin = AdminService(accounts, user_limits, history, chat, [image_slot, text_slot], request_log, api_keys)
    return Services(settings=settings, accounts=accounts, images=images, history=history, chat=chat,
                    image_slot=image_slot, text_slot=text_slot, residency=residency, catalog=catalog,
                    uploads=Uploads(upload_limits), torch_threads=threads,
                    replicas=ReplicaWatch(db, images, chat, settings.replica_sweep_s), shared=shared,
                    request_log=request_log, limits=user_limits, admin=admin, running=running, api_keys=api_keys,
                    preferences=Preferences(), image_links=ImageLinks(),
                    default_models={"image": image_slot.status().model, "text": text_slot.status().model,
                                    "image_source": str(_tiny_sd_dir(settings) or settings.resolved_image_model)},
                    **_history_services(settings, history, chat, store, upload_limits))


def _history_services(settings: Settings, history: HistoryService, chat: ChatService, store: BlobStore,
                      upload_limits: UploadLimits) -> dict[str, Any]:
    """Issue 25's services over the history: search, collections, exports, the account archive, retention."""
    search, collections, user_settings = SearchService(), CollectionService(), UserSettings()
    return {"search": search, "collections": collections, "user_settings": user_settings,
            "exports": ExportService(history, collections, search, store),
            "archive": ArchiveService(history, store, upload_limits, settings.archive_max_bytes,
                                      settings.archive_max_members, user_settings),
            "retention": Retention(history, chat, settings.retention_days, settings.retention_sweep_s, user_settings)}


def default_limits(settings: Settings) -> Limits:
    """Every user's limits unless an admin overrides them: the settings'."""
    return Limits(image_jobs=settings.limit_image_jobs, chat_messages=settings.limit_chat_messages,
                  uploads=settings.limit_uploads, reads=settings.limit_reads, queue_quota=settings.user_queue_quota)


def watch_metrics(images: ImageService, slots: list[ModelSlot[Any]], request_log: RequestLog) -> None:
    """The live gauges a scrape reads: jobs waiting for and using each model (images waiting for a batch count
    as waiting), each model's state, the request log's backlog and, with CUDA, the GPU's memory."""

    def jobs() -> list[metrics.LiveJobs]:
        live = []
        for slot in slots:
            waiting, running = slot.load_counts()
            if slot.kind == "image":  # a job in the batcher's line holds the slot but waits for its first batch
                in_line = images.batcher.jobs_in_line()
                waiting, running = waiting + in_line, max(0, running - in_line)
            live.append(metrics.LiveJobs(slot.kind, slot.status().model, waiting, running))
        return live

    metrics.watch_jobs("slots", jobs)
    metrics.watch_models("slots", lambda: [metrics.LiveModel(s.kind, s.status().model, s.status().state.value)
                                           for s in slots])
    metrics.watch_gauge("atelier_request_log_pending", "Request log rows waiting to be written",
                        lambda: request_log.pending)
    metrics.watch_gpu_memory(_gpu_memory)
