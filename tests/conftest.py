"""Test-wide setup: offline environment, a guard against outside connections, the tiny models."""

from __future__ import annotations

import ipaddress
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.live.postgres import PostgresServer
    from tests.live.s3 import MotoS3

# Before anything imports gradio or huggingface_hub: no analytics, no hub, temp files in a temp dir.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["GPTQMODEL_CPU_WORKERS"] = "2"
os.environ.setdefault("GRADIO_TEMP_DIR", tempfile.mkdtemp(prefix="atelier-gradio-"))
# The databases the storage and service suites run on; TEST_DATABASES=sqlite runs only SQLite while developing.
DATABASES = os.environ.get("TEST_DATABASES", "sqlite,postgresql").split(",")
# Settings read ATELIER_* and .env; a developer's own values must not leak into tests.
for _key in [k for k in os.environ if k.startswith("ATELIER_")]:
    del os.environ[_key]

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


class OutsideConnectionError(AssertionError):
    """A test tried to reach a host other than this machine."""


def _check_address(sock: socket.socket, address: object) -> None:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return  # unix sockets and the like stay on this machine
    host = address[0] if isinstance(address, tuple) else address
    try:
        if ipaddress.ip_address(str(host).split("%")[0]).is_loopback:
            return
    except ValueError:
        if host == "localhost":
            return
    raise OutsideConnectionError(f"test opened a non-loopback connection to {address!r}")


def _guarded_connect(self: socket.socket, address: object) -> None:
    _check_address(self, address)
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    _check_address(self, address)
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True)
def no_outside_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test that opens a connection to anything but loopback."""
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)


# Redis for shared state (tests/live/redis.py): one server a session, emptied before each test that asks.
@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A throwaway redis-server on loopback; skipped, saying why, only where it is not installed."""
    from tests.live.redis import missing_reason, redis_server

    if reason := missing_reason():
        pytest.skip(reason)
    with redis_server() as url:
        yield url


@pytest.fixture
def redis_db(redis_url: str) -> str:
    """The session's Redis, emptied: no limits, tickets or sessions left by earlier tests."""
    from tests.live.redis import empty

    return empty(redis_url)


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random-weight Stable Diffusion, built once per test session."""
    from pipelines.tiny import ensure_tiny_sd

    return ensure_tiny_sd(tmp_path_factory.mktemp("models") / "tiny-sd")


# The tiny SDXL family (pipelines/tiny.py): built once per session, next to each other, for the SDXL and ControlNet
# tests; each build takes a few seconds on a CPU.
@pytest.fixture(scope="session")
def tiny_xl_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for the session's tiny SDXL models, ControlNets and single files."""
    return tmp_path_factory.mktemp("xl-models")


@pytest.fixture(scope="session")
def tiny_sdxl_dir(tiny_xl_root: Path) -> Path:
    """The tiny random-weight SDXL pipeline folder."""
    from pipelines.tiny import ensure_tiny_sdxl

    return ensure_tiny_sdxl(tiny_xl_root / "tiny-sdxl")


@pytest.fixture(scope="session")
def tiny_sdxl_file(tiny_sdxl_dir: Path, tiny_xl_root: Path) -> Path:
    """The tiny SDXL written as one .safetensors file in the original (sgm) key layout."""
    from pipelines.checkpoints import write_single_file

    return write_single_file(tiny_sdxl_dir, tiny_xl_root / "models" / "tiny-sdxl.safetensors")


@pytest.fixture(scope="session")
def controlnet_dir(tiny_xl_root: Path) -> Path:
    """``<data>/controlnet`` holding the tiny ControlNets: tiny-cn-sd15 and tiny-cn-sdxl."""
    return tiny_xl_root / "controlnet"


@pytest.fixture(scope="session")
def tiny_cn_sd15(controlnet_dir: Path, tiny_sd_dir: Path) -> Path:
    """A tiny ControlNet for the tiny SD 1.5, as a diffusers folder under controlnet_dir."""
    from pipelines.tiny import ensure_tiny_controlnet

    return ensure_tiny_controlnet(controlnet_dir / "tiny-cn-sd15", tiny_sd_dir)


@pytest.fixture(scope="session")
def tiny_cn_sdxl(controlnet_dir: Path, tiny_sdxl_dir: Path) -> Path:
    """A tiny ControlNet for the tiny SDXL, as a diffusers folder under controlnet_dir."""
    from pipelines.tiny import ensure_tiny_controlnet

    return ensure_tiny_controlnet(controlnet_dir / "tiny-cn-sdxl", tiny_sdxl_dir)


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for the session's tiny text models."""
    return tmp_path_factory.mktemp("text-models")


@pytest.fixture(scope="session")
def tiny_r1_dir(tiny_models_dir: Path) -> Path:
    """The tiny random-weight DeepSeek-R1 (full precision), built once per test session."""
    from pipelines.tiny import ensure_tiny_r1

    return ensure_tiny_r1(tiny_models_dir / "tiny-r1")


@pytest.fixture(scope="session")
def tiny_r1_gptq_dir(tiny_models_dir: Path, tiny_r1_dir: Path) -> Path:
    """The tiny R1 quantized to 4-bit GPTQ on the CPU, built once per test session."""
    from pipelines.tiny import ensure_tiny_r1_gptq

    return ensure_tiny_r1_gptq(tiny_models_dir / "tiny-r1-gptq", source=tiny_r1_dir)


# Real llama.cpp servers (.ci/llama-cpp builds both): the skip fixtures come first in a test's arguments, so a
# missing server skips before the GGUF is written.
@pytest.fixture(scope="session")
def llama_cpp_python_ready() -> None:
    """Skip unless llama-cpp-python[server] is installed (checked before the GGUF is built); fail when CI's
    build of it is broken."""
    from tests.standins.llama_cpp import check_llama_cpp_python, required_or_skip

    required_or_skip(check_llama_cpp_python)


@pytest.fixture(scope="session")
def llama_server_ready() -> str:
    """llama.cpp's llama-server binary; skip when there is none, fail when $LLAMA_SERVER names a missing one."""
    from tests.standins.llama_cpp import llama_server_binary, required_or_skip

    return required_or_skip(llama_server_binary)


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory, tiny_r1_dir: Path) -> Path:
    """The tiny R1 written as GGUF, once per session (beside, not inside, the shared tiny models folder)."""
    from tests.standins.llama_cpp import check_gguf, required_or_skip
    from tests.standins.tiny_gguf import write_tiny_r1_gguf

    required_or_skip(check_gguf)  # fails where the environment asked for the real servers

    return write_tiny_r1_gguf(tiny_r1_dir, tmp_path_factory.mktemp("gguf") / "tiny-r1-f32.gguf")


# Databases: the same tests on SQLite (the one-box default) and on PostgreSQL (replicas; tests/live/postgres.py).
@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL 15 for the whole session; skipped only where its binaries are not installed."""
    from tests.live.postgres import PostgresServer, missing_reason

    if reason := missing_reason():
        pytest.skip(reason)
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty PostgreSQL database."""
    return postgres_server.create_database()


@pytest.fixture(params=DATABASES)
def db_location(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """A fresh database for one test: a SQLite file, then (the same test again) a PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "atelier.db"
    return request.getfixturevalue("postgres_server").create_database()


@pytest.fixture(scope="module", params=DATABASES)
def module_database_url(request: pytest.FixtureRequest) -> str:
    """Settings.database_url for module-scoped services: "" (SQLite in the data dir), then a PostgreSQL one."""
    if request.param == "sqlite":
        return ""
    return request.getfixturevalue("postgres_server").create_database()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[MotoS3]:
    """A real S3 HTTP API (moto's server) on a free loopback port for the whole session."""
    from tests.live.s3 import MotoS3

    server = MotoS3().start()
    yield server
    server.stop()
