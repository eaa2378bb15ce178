"""Typed settings: one object, env prefix ATELIER_, `.env` support, every path derived from the data dir."""

from __future__ import annotations

import ast
import importlib.util
import os
import socket
import sys
from enum import StrEnum
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def check_origin(origin: str) -> str:
    """A web origin as browsers send it (`scheme://host[:port]`, lower case, no path); ValueError otherwise."""
    tidy = origin.strip().rstrip("/").lower()
    parts = urlsplit(tidy)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query or parts.fragment \
            or parts.username or parts.password:
        raise ValueError(f"cors_origins: {origin!r} is not an origin such as https://studio.example.com (a scheme "
                         "and a host, an optional port, no path; \"*\" is not allowed)")
    return tidy


class Profile(StrEnum):
    """Which default models and devices to use."""

    AUTO = "auto"
    GPU = "gpu"
    CPU = "cpu"
    TINY = "tiny"


MemoryMode = Literal["none", "model-offload", "sequential-offload"]
IdlePolicy = Literal["resident", "offload", "unload"]
RateLimitMode = Literal["auto", "on", "off"]
McpMode = Literal["auto", "on", "off"]
CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]
CompileScope = Literal["regional", "full"]
GptqBackend = Literal["auto", "machete", "marlin", "exllama_v2", "triton", "torch"]
TextCache = Literal["dynamic", "static"]
LogFormat = Literal["text", "json"]
MetricsAccess = Literal["protected", "open", "off"]

# The defaults each profile brings; an explicit --image-model / --text-model always wins.
PROFILE_IMAGE_MODELS: dict[Profile, str] = {
    Profile.GPU: "stable-diffusion-v1-5/stable-diffusion-v1-5",
    Profile.CPU: "stabilityai/sd-turbo",
    Profile.TINY: "tiny",
}
PROFILE_IMAGE_DEFAULTS: dict[Profile, dict[str, float | int | str]] = {
    # SD 1.5: the usual A1111 defaults.
    Profile.GPU: {"steps": 25, "cfg_scale": 7.0, "width": 512, "height": 512, "sampler": "Euler a"},
    # sd-turbo is distilled for 1-4 steps without guidance.
    Profile.CPU: {"steps": 2, "cfg_scale": 0.0, "width": 512, "height": 512, "sampler": "Euler a"},
    Profile.TINY: {"steps": 8, "cfg_scale": 7.0, "width": 256, "height": 256, "sampler": "Euler a"},
}
PROFILE_TEXT_MODELS: dict[Profile, str] = {
    Profile.GPU: "avoroshilov/DeepSeek-R1-Distill-Qwen-14B-GPTQ_4bit-128g",
    Profile.CPU: "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B",
    Profile.TINY: "tiny-gptq",
}

# An idle model after keep_alive_s: a GPU box parks it in CPU RAM so the other model has the VRAM
# (14B GPTQ ~9 GB + SD 1.5 fp16 ~3 GB is tight on 12 GB cards); on a CPU both stay where they are.
PROFILE_IDLE_POLICY: dict[Profile, IdlePolicy] = {
    Profile.GPU: "offload",
    Profile.CPU: "resident",
    Profile.TINY: "resident",
}
# R1 thinks at length; the tiny model only needs to show the path works.
PROFILE_MAX_NEW_TOKENS: dict[Profile, int] = {Profile.GPU: 4096, Profile.CPU: 2048, Profile.TINY: 128}
# Images of waiting jobs per pipeline call (services/batcher.py): 1, no batching, on every profile until
# bench/gpu_check.py measures batches faster on a GPU (on CPU a batch of 4 ran at 0.89x the images/s of unbatched
# concurrent jobs, bench/image_throughput.py); ATELIER_MAX_BATCH_IMAGES turns batching on. When the gpu default
# goes above 1: cap it under sequential offload (too little memory for big activations) and keep a remote backend
# at 1 (it runs a batch's members one by one).
DEFAULT_MAX_BATCH_IMAGES = 1

# Replies that share forward passes in process on a GPU (continuous batching, pipelines/text_batching.py): decode
# reads every weight once per step whatever the batch, so up to this many replies cost about one. 8 is the issue's
# target and awaits the GPU measurement (bench/text_overhead.py --concurrency, bench/text_gpu.py). On the CPU the
# in-process default stays 1: see docs/batching.md and docs/benchmarks.md.
DEFAULT_GPU_TEXT_CONCURRENCY = 8
REMOTE_TEXT_CONCURRENCY = 4

# torch's intra-op threads for the models, as a share of the cores this process may use. torch's own default (every
# core) stalls a busy machine: each parallel region waits at its barrier for the one OpenMP thread the OS has
# descheduled (bench/torch_threads.py, 2 cores with 2 busy processes: a tiny 256² job took 2.1x longer with 2 threads
# than with 1 on a quiet box, ~10x on a shared one; idle, 2 threads were 1.3x faster).
# Half the cores leaves room for the event loop, the other model and the neighbours. The tiny profile takes 1: it
# runs beside test clients and browsers, where a second thread stalls. The gpu profile's CPU only feeds the GPU.
PROFILE_TORCH_THREAD_SHARE: dict[Profile, float] = {Profile.GPU: 0.5, Profile.CPU: 0.5, Profile.TINY: 0.0}

# The tiny model's random weights rarely close </think> on their own: a budget makes it answer too.
PROFILE_THINKING_BUDGET: dict[Profile, int | None] = {Profile.GPU: None, Profile.CPU: None, Profile.TINY: 32}


def cuda_available() -> bool:
    """True when torch is importable and sees a CUDA device."""
    if "torch" not in sys.modules and torch_build_gpus() == ():
        # A build of torch without CUDA or ROCm never sees a GPU: no need to import it (~1.5 s and ~180 MiB that
        # the server would otherwise carry from its start, before any model is asked for).
        return False
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard requirement, but settings must not crash
        return False
    return bool(torch.cuda.is_available())


def torch_build_gpus() -> tuple[str, ...] | None:
    """The GPU platforms the installed torch was built for ("cuda", "hip"), read from its torch/version.py without
    importing torch; None when that file cannot be read as expected (then only torch itself can tell)."""
    spec = importlib.util.find_spec("torch")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    try:
        tree = ast.parse(Path(folders[0], "version.py").read_text())
        values = {target.id: ast.literal_eval(node.value) for node in tree.body
                  if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None
                  for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
                  if isinstance(target, ast.Name)}
    except (IndexError, OSError, SyntaxError, ValueError):
        return None
    if "cuda" not in values or "hip" not in values:
        return None
    return tuple(name for name in ("cuda", "hip") if values[name])


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS and Windows have no affinity call
        return os.cpu_count() or 1


def split_storage_url(url: str) -> tuple[str, str]:
    """The bucket and key prefix of ATELIER_STORAGE_URL (`s3://bucket` or `s3://bucket/some/prefix`); ValueError with
    the reason otherwise."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"storage URL must look like s3://bucket/prefix (or be empty for the local folder), "
                         f"got {url!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"storage URL takes no query or fragment, got {url!r}")
    return parts.netloc, parts.path.strip("/")


class Settings(BaseSettings):
    """Everything Atelier can be told, from flags, `ATELIER_*` variables or `.env`."""

    model_config = SettingsConfigDict(
        env_prefix="ATELIER_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    profile: Profile = Field(default=Profile.AUTO, description="Which default models and devices: `gpu`, `cpu`, "
                             "`tiny` (offline random-weight models) or `auto` (`gpu` when CUDA is available, else "
                             "`cpu`).")
    host: str = Field(default="127.0.0.1", description="Listen address; `0.0.0.0` serves the network (which needs "
                      "accounts, or `--insecure-no-auth`).")
    port: int = Field(default=7860, ge=0, le=65535, description="Listen port.")
    data_dir: Path = Field(default=Path("./data"), description="Where everything lives: the database `atelier.db`, "
                           "`images/`, `models/` (the tiny models are built here), `loras/`, `vae/`, `upscalers/`, "
                           "`controlnet/`, `annotators/`, `tmp/`.")
    share: bool = Field(default=False, description="Also open a public Gradio share link (accounts are enforced).")
    # "" keeps SQLite in the data dir (one box); several replicas share a PostgreSQL database instead.
    database_url: str = Field(default="", pattern=r"^(postgres(ql)?://.+)?$",
                              description="`postgresql://user:password@host:5432/name` for several replicas "
                                          "(pooled psycopg 3 connections, migrations applied once however many "
                                          "replicas start together); empty: SQLite `atelier.db` in the data dir.")
    database_pool_size: int = Field(default=20, ge=1, description="PostgreSQL connections one replica may hold.")

    # Images
    image_backend: str = Field(default="diffusers", description="Image backend by registry name: `diffusers` "
                               "(in process) or `a1111` (an AUTOMATIC1111 WebUI).")
    image_model: str | None = Field(default=None, description="A hub id or a local diffusers folder (SD 1.x/2.x, "
                                    "SDXL, …); unset: the profile's.")
    memory_mode: MemoryMode = Field(default="none", description="`none`, `model-offload` (A1111's medvram) or "
                                    "`sequential-offload` (lowvram); CUDA only. SDXL in float16 wants about 8 GB of "
                                    "VRAM (Stability's published minimum): below that, `model-offload`.")
    max_batch_images: int | None = Field(default=None, ge=1, le=64,
                                         description="Images of waiting jobs that share one pipeline call; unset: "
                                                     "1 (no batching) on every profile until measured on a GPU.")
    attention_slicing: bool = Field(default=False, description="Attention slicing: VRAM savings for big images.")
    vae_slicing: bool = Field(default=False, description="VAE slicing: VRAM savings for big batches.")
    vae_tiling: bool = Field(default=False, description="VAE tiling: VRAM savings for big images.")
    min_size: int = Field(default=64, ge=8, description="Smallest allowed width and height (multiples of 8).")
    max_size: int = Field(default=2048, ge=8, description="Largest allowed width and height (multiples of 8).")
    max_steps: int = Field(default=500, ge=1, description="Most sampling steps a request may ask for.")
    max_batch_count: int = Field(default=8, ge=1, description="Most images one request may ask for.")
    max_prompt_chars: int = Field(default=4000, ge=1, description="Longest prompt or negative prompt, in "
                                  "characters.")
    # Uploaded images (img2img init images, inpainting masks, PNG Info): checked before they are decoded.
    upload_max_bytes: int = Field(default=20 * 1024 * 1024, ge=1, description="Largest uploaded image file, in "
                                  "bytes (init images, masks, PNG Info).")
    upload_max_pixels: int = Field(default=4096 * 4096, ge=1, description="Most pixels of an uploaded image.")
    preview_every: int = Field(default=2, ge=1, description="A live preview every N steps.")
    # Each streamed update costs the event loop a Gradio postprocess and an SSE message, on the CPU the pipeline
    # needs (bench/image_overhead.py --phases): steps faster than this are coalesced into the next update.
    stream_interval_s: float = Field(default=0.25, ge=0,
                                     description="At most one progress/preview/status message per this many "
                                                 "seconds while a job runs (the first, a new place in line and the "
                                                 "result go at once), and the least time between two live "
                                                 "previews.")
    # Off on every profile until bench/gpu_check.py measures it faster on a GPU; then the gpu profile flips.
    compile: bool = Field(default=False, description="`torch.compile` the UNet and VAE decoder, warmed up at load.")
    compile_mode: CompileMode = Field(default="default", description="torch.compile mode.")
    compile_scope: CompileScope = Field(default="regional", description="`regional`: the UNet's repeated "
                                        "transformer blocks (fast to compile); `full`: the whole UNet.")
    compile_backend: str = Field(default="inductor", description="torch.compile backend (`eager`/`aot_eager` test "
                                 "it).")
    compile_dynamic: bool = Field(default=True, description="One dynamic-shape graph for every size and batch (no "
                                  "recompile).")
    torch_threads: int | None = Field(default=None, ge=1, le=1024,
                                      description="torch intra-op threads, set once at start and shown in "
                                                  "`/api/health`; unset: half the usable cores (CPU affinity) on "
                                                  "gpu and cpu, 1 on tiny. Give replicas on one box cores / "
                                                  "replicas each.")
    torch_interop_threads: int = Field(default=1, ge=1, le=1024, description="torch inter-op threads (the "
                                       "pipelines run no inter-op parallel work); torch takes it only before its "
                                       "first parallel work.")

    # Text
    text_backend: str = Field(default="transformers", description="Text backend by registry name: `transformers` "
                              "(in process) or `openai` (an OpenAI-compatible server).")
    text_model: str | None = Field(default=None, description="A hub id or a local transformers folder; GPTQ "
                                   "checkpoints (a `quantization_config` in `config.json`) load through gptqmodel; "
                                   "unset: the profile's.")
    temperature: float = Field(default=0.6, ge=0, le=2, description="Default sampling temperature (DeepSeek's "
                               "recommendation for R1; no system prompt is used).")
    top_p: float = Field(default=0.95, gt=0, le=1, description="Default nucleus sampling (DeepSeek's "
                         "recommendation for R1).")
    max_new_tokens: int | None = Field(default=None, ge=1, description="Default reply length; unset: the "
                                       "profile's (gpu 4096, cpu 2048, tiny 128).")
    max_new_tokens_limit: int = Field(default=8192, ge=1, description="Longest reply a request may ask for.")
    thinking_budget: int | None = Field(default=None, ge=1, description="After this many reasoning tokens "
                                        "`</think>` is forced and the model answers; unset: no budget (tiny: 32).")
    max_message_chars: int = Field(default=20000, ge=1, description="Longest chat message, in characters.")
    # The GPTQ kernel and the decode path of a single reply (pipelines/gptq_kernels.py): auto takes the fastest kernel
    # that works on this GPU and warns once when a faster one could not be built. The static cache and compiled
    # decode stay off until bench/text_gpu.py measures them faster on a GPU.
    gptq_backend: GptqBackend = Field(default="auto", description="GPTQ kernel: `auto` (the fastest that works "
                                      "here), `machete`, `marlin`, `exllama_v2`, `triton`, `torch`; a kernel that "
                                      "cannot run is refused with the reason.")
    text_cache: TextCache = Field(default="dynamic", description="KV cache of a single reply's `generate()`: "
                                  "`dynamic` or `static` (preallocated, a power of two of tokens).")
    text_compile: bool = Field(default=False, description="`torch.compile` the decode step (with `text_cache` "
                               "static; on CUDA as CUDA graphs, `reduce-overhead`).")

    # One GPU, two models
    idle_policy: IdlePolicy | None = Field(default=None, description="What happens to a model idle for "
                                           "`keep_alive_s`: `resident`, `offload` (to CPU RAM) or `unload`; unset: "
                                           "the profile's (`offload` on gpu, `resident` on cpu and tiny).")
    keep_alive_s: float = Field(default=300, ge=0, description="Idle seconds before the idle policy applies.")

    # Gateway: accounts, limits, quotas, cache
    insecure_no_auth: bool = Field(default=False, description="Serve a network host or a share link without "
                                   "accounts (not recommended).")
    rate_limits: RateLimitMode = Field(
        default="auto", description="`auto`: rate limits and queue quota when accounts exist or the server is "
                                    "exposed (a network host or `--share`), not for the owner of a loopback server "
                                    "without accounts; `on`; `off` (login throttling stays).")
    ratelimit_storage: str = Field(default="memory://", description="`limits` storage URI, e.g. "
                                   "`redis://host:6379`; `redis_url` is used when this is left at `memory://`.")
    # Several replicas share rate limits, login throttling, the queue quota and login sessions here
    # (storage/shared_state.py); "" keeps them in process memory, right for one replica.
    redis_url: str = Field(default="", description="`redis://host:6379/0` that all replicas share: rate limits, "
                           "login throttling, the queue quota, login sessions; empty: process memory.")
    trusted_proxies: list[str] = Field(default_factory=list, description="Proxy addresses or networks whose "
                                       "`X-Forwarded-For` is believed, as a JSON list, e.g. `[\"10.0.0.0/8\"]`.")
    # Pages of these sites may use Atelier with the login cookie (CORS and the cross-site check both let them); a
    # request with an API key (Authorization: Bearer) needs no entry, as no page can borrow a key the way it borrows
    # a cookie. Exact origins only: "*" with credentials would let every site act as the user.
    cors_origins: list[str] = Field(default_factory=list, description="Origins of other sites whose pages may call "
                                    "Atelier with the user's login (the React client served from elsewhere), as a "
                                    "JSON list of `scheme://host[:port]`, e.g. `[\"https://studio.example.com\"]`; "
                                    "empty: none (every change sent by another site's page is refused).")
    limit_image_jobs: str = Field(default="10/minute", description="Image jobs per user (or address).")
    limit_chat_messages: str = Field(default="30/minute", description="Chat messages per user (or address).")
    limit_uploads: str = Field(default="30/minute", description="Uploads per user (or address).")
    limit_logins: str = Field(default="5/minute", description="Login attempts per address and account, whatever "
                              "`rate_limits` says.")
    limit_reads: str = Field(default="240/minute", description="History, conversations and REST reads per user "
                             "(or address).")
    user_queue_quota: int = Field(default=4, ge=1, description="Queued plus running jobs per user (where limits "
                                  "apply).")
    cache_enabled: bool = Field(default=True, description="Answer an identical request (fixed seed; chat at "
                                "temperature 0) from the result cache.")
    cache_max_age_s: float = Field(default=7 * 86400, ge=0, description="Seconds a cached result is reused.")
    cache_max_entries: int = Field(default=1000, ge=0, description="Cached results kept per user.")
    share_server_address: str | None = Field(default=None, description="A self-hosted FRP share server, "
                                             "`host:port`; unset: Gradio's.")

    # Remote backends
    # AUTOMATIC1111 WebUI started with --api (--nowebui serves the API alone, on port 7861 by default).
    a1111_url: str = Field(default="http://127.0.0.1:7861", description="The AUTOMATIC1111 WebUI's address "
                           "(`--nowebui` serves the API on 7861).")
    a1111_auth: SecretStr | None = Field(default=None, description="`user:pass`, as given to the WebUI's "
                                         "`--api-auth`.")
    a1111_job_timeout_s: float = Field(default=1800, gt=0, description="Longest wait for one txt2img call (queue "
                                       "time included).")
    a1111_poll_s: float = Field(default=0.5, gt=0, description="How often progress and the live preview are "
                                "fetched.")
    # OpenAI-compatible chat server (vLLM, llama.cpp's llama-server, SGLang, Ollama): the base URL includes /v1.
    openai_base_url: str = Field(default="http://127.0.0.1:8000/v1", description="The server's API base, "
                                 "including `/v1`.")
    openai_api_key: SecretStr | None = Field(default=None, description="Sent as `Authorization: Bearer …` (vLLM "
                                             "and llama-server: `--api-key`).")
    openai_model: str | None = Field(default=None, description="The served model name, checked against "
                                     "`/v1/models`; unset: the server's first.")
    remote_timeout_s: float = Field(default=60, gt=0, description="Connect timeout (at most 10 s) and the longest "
                                    "wait for each answer or streamed token from a remote server.")
    text_concurrency: int | None = Field(default=None, ge=1,
                                         description="Replies generated at once; in process they share forward "
                                                     "passes (continuous batching); unset: 8 in process on CUDA, "
                                                     "1 on CPU, 4 remote.")

    # Image storage: the local images folder, or an S3-compatible bucket shared by several replicas
    storage_url: str = Field(default="", description="`s3://bucket/prefix`: images in an S3-compatible bucket, "
                             "named `prefix/YYYY-MM-DD/JOB-INDEX-SEED.png`; empty: `images/` in the data dir.")
    s3_endpoint_url: str | None = Field(default=None, description="A self-hosted store, e.g. "
                                        "`http://minio:9000` (path-style addresses); unset: AWS S3.")
    s3_region: str | None = Field(default=None, description="e.g. `eu-central-1`; unset: boto3's default.")
    s3_access_key_id: str | None = Field(default=None, description="unset: boto3's usual chain (environment, "
                                         "`~/.aws`, an instance or pod role).")
    s3_secret_access_key: SecretStr | None = Field(default=None, description="The secret of `s3_access_key_id`.")
    s3_presign: bool = Field(default=False, description="`/api/images/{id}` answers 307 to a presigned URL "
                             "instead of streaming the image.")
    s3_presign_ttl_s: int = Field(default=300, ge=1, le=7 * 86400, description="How long a presigned URL works.")

    # History (issue 25)
    retention_days: int = Field(default=0, ge=0, le=36500,
                                description="delete image jobs and conversations older than this many days "
                                            "(favourites and collections kept); 0 keeps everything; a user may set "
                                            "fewer days for their own")
    retention_sweep_s: float = Field(default=3600, ge=0, description="seconds between retention sweeps; 0: none")
    archive_max_bytes: int = Field(default=4 * 1024**3, ge=1,
                                   description="largest account archive an import reads (all its files unpacked)")
    archive_max_members: int = Field(default=200_000, ge=1, description="most files in an imported archive")

    # Serving
    warmup: bool = Field(default=True, description="Load models in the background at start (off: on the first "
                         "request).")
    # Shown by /api/health, so that behind a proxy one can tell which replica answered, and recorded on the jobs a
    # replica runs, so that its restart recovers its own unfinished work while other replicas run. Unique per
    # replica, and the same across its restarts.
    replica_name: str = Field(default="", max_length=255,
                              description="This replica's name, shown by `/api/health` and recorded on the work it "
                                          "runs; unique per replica, unchanged across its restarts; empty: "
                                          "`hostname:port`.")
    # How often a replica on PostgreSQL looks for replicas that died and never came back, and records their
    # unfinished work as interrupted (services/replicas.py); 0 turns the sweep off.
    replica_sweep_s: float = Field(default=30, ge=0, description="On PostgreSQL, seconds between looks for "
                                   "replicas that died and never came back (their unfinished work is marked "
                                   "interrupted); 0 turns it off.")
    mcp: McpMode = Field(default="auto", description="Gradio's MCP server at `/gradio_api/mcp` (Streamable HTTP; SSE "
                         "at `/gradio_api/mcp/sse`), its tools the public API endpoints, behind API keys when "
                         "accounts exist: `on`, `off`, or `auto`: on where accounts exist or the server listens on "
                         "loopback only.")
    queue_max_size: int = Field(default=64, ge=1, description="Jobs waiting in the queue before new ones are "
                                "refused (HTTP 503, \"Atelier is busy\").")
    session_grace_s: float = Field(default=600, ge=0, description="Seconds a session keeps its state once its tab "
                                   "or client is gone.")
    temp_max_age_s: float = Field(default=86400, ge=0,
                                  description="Seconds cached previews and results live unless a held session "
                                              "shows them.")
    temp_sweep_every_s: float = Field(default=300, gt=0, description="How often quiet sessions and old cached "
                                      "files go.")

    # Operations (issue 26): the request log, metrics, structured logs.
    log_format: LogFormat = Field(default="text", description="text: one readable line per record; json: one JSON "
                                  "object per line (time, level, logger, message, request id, user, job id)")
    request_log: bool = Field(default=True, description="record every request and job in the database "
                              "(written in batches by a background thread, off the request path)")
    request_log_retention_days: float = Field(default=90, ge=0, description="days the request log keeps a row; "
                                              "0 keeps every row")
    request_log_max_pending: int = Field(default=10000, ge=1, description="rows held in memory while the database "
                                         "is slow; beyond that new rows are dropped and counted")
    metrics_access: MetricsAccess = Field(default="protected", description="/metrics: protected (loopback clients, "
                                          "an admin's login, or ATELIER_METRICS_TOKEN), open, or off (404)")
    metrics_token: SecretStr | None = Field(default=None, description="a bearer token Prometheus sends "
                                            "(Authorization: Bearer TOKEN) to scrape /metrics from elsewhere")

    @model_validator(mode="after")
    def _check_sizes(self) -> Settings:
        if self.min_size > self.max_size:
            raise ValueError(f"min_size ({self.min_size}) must not exceed max_size ({self.max_size})")
        if self.storage_url:
            split_storage_url(self.storage_url)  # a clear ValueError for anything but s3://bucket/prefix
        self.cors_origins = [check_origin(origin) for origin in self.cors_origins]
        if self.max_new_tokens is not None and self.max_new_tokens > self.max_new_tokens_limit:
            raise ValueError(f"max_new_tokens ({self.max_new_tokens}) must not exceed max_new_tokens_limit "
                             f"({self.max_new_tokens_limit})")
        return self

    # --- derived -------------------------------------------------------------------------------
    @property
    def resolved_profile(self) -> Profile:
        """`auto` becomes gpu when CUDA is available, else cpu."""
        if self.profile is Profile.AUTO:
            return Profile.GPU if cuda_available() else Profile.CPU
        return self.profile

    @property
    def resolved_image_model(self) -> str:
        """The image model to load: the flag, else the profile's default."""
        return self.image_model or PROFILE_IMAGE_MODELS[self.resolved_profile]

    @property
    def resolved_text_model(self) -> str:
        """The text model to load: the flag, else the profile's default."""
        return self.text_model or PROFILE_TEXT_MODELS[self.resolved_profile]

    @property
    def resolved_idle_policy(self) -> IdlePolicy:
        """What happens to an idle model after keep_alive_s: the setting, else the profile's default."""
        return self.idle_policy or PROFILE_IDLE_POLICY[self.resolved_profile]

    @property
    def resolved_max_new_tokens(self) -> int:
        """Default reply length: the setting, else the profile's."""
        return self.max_new_tokens or PROFILE_MAX_NEW_TOKENS[self.resolved_profile]

    @property
    def resolved_thinking_budget(self) -> int | None:
        """Default thinking budget: the setting, else the profile's (none on real models)."""
        return self.thinking_budget or PROFILE_THINKING_BUDGET[self.resolved_profile]

    # Remote backends
    @property
    def resolved_text_concurrency(self) -> int:
        """Replies generated at once: the setting, else 4 for a remote server (it batches), and in process
        DEFAULT_GPU_TEXT_CONCURRENCY on CUDA (they share forward passes) and 1 on the CPU."""
        if self.text_concurrency is not None:
            return self.text_concurrency
        if self.text_backend == "openai":
            return REMOTE_TEXT_CONCURRENCY
        return DEFAULT_GPU_TEXT_CONCURRENCY if cuda_available() else 1

    @property
    def resolved_max_batch_images(self) -> int:
        """Images per batched call: the setting, else the default (no batching until measured on a GPU)."""
        return DEFAULT_MAX_BATCH_IMAGES if self.max_batch_images is None else self.max_batch_images

    @property
    def resolved_torch_threads(self) -> int:
        """torch intra-op threads: the setting, else the profile's share of the usable cores (at least 1)."""
        if self.torch_threads is not None:
            return self.torch_threads
        return max(1, int(usable_cores() * PROFILE_TORCH_THREAD_SHARE[self.resolved_profile]))

    @property
    def image_defaults(self) -> dict[str, float | int | str]:
        """UI/API defaults that suit the profile's image model."""
        return dict(PROFILE_IMAGE_DEFAULTS[self.resolved_profile])

    @property
    def data_path(self) -> Path:
        """The data dir as an absolute path."""
        return self.data_dir.expanduser().resolve()

    @property
    def db_path(self) -> Path:
        """The SQLite database file."""
        return self.data_path / "atelier.db"

    @property
    def resolved_replica_name(self) -> str:
        """ATELIER_REPLICA_NAME, or this machine's hostname and port (two replicas on one box differ by port)."""
        return self.replica_name or f"{socket.gethostname()}:{self.port}"

    @property
    def database_location(self) -> Path | str:
        """What storage.db.open_database opens: the PostgreSQL URL when set, else the SQLite file."""
        return self.database_url or self.db_path

    @property
    def images_dir(self) -> Path:
        """Where finished images are written."""
        return self.data_path / "images"

    @property
    def image_cache_dir(self) -> Path:
        """Local copies of images kept in S3, for Gradio to serve (disposable, swept by age)."""
        return self.tmp_dir / "image-cache"

    @property
    def models_dir(self) -> Path:
        """Checkpoints (single .safetensors/.ckpt files and diffusers folders); the tiny models are built here."""
        return self.data_path / "models"

    @property
    def loras_dir(self) -> Path:
        """LoRA files, asked for in prompts as <lora:name:weight>."""
        return self.data_path / "loras"

    @property
    def vae_dir(self) -> Path:
        """VAE files or folders a job can choose instead of its checkpoint's own VAE."""
        return self.data_path / "vae"

    @property
    def upscalers_dir(self) -> Path:
        """Upscaler models (spandrel) for the hires fix."""
        return self.data_path / "upscalers"

    @property
    def controlnet_dir(self) -> Path:
        """ControlNet models (diffusers folders, or single files) for ControlNet units; the tiny ones are built here."""
        return self.data_path / "controlnet"

    @property
    def annotators_dir(self) -> Path:
        """Weights of the ControlNet preprocessors that need a network (HED under hed/), as sd-webui-controlnet keeps
        them."""
        return self.data_path / "annotators"

    @property
    def tmp_dir(self) -> Path:
        """Scratch space (Gradio's file cache lives here)."""
        return self.data_path / "tmp"

    def ensure_dirs(self) -> None:
        """Create the data dir and everything under it."""
        for path in (self.data_path, self.images_dir, self.models_dir, self.loras_dir, self.vae_dir,
                     self.upscalers_dir, self.controlnet_dir, self.annotators_dir, self.tmp_dir):
            path.mkdir(parents=True, exist_ok=True)
