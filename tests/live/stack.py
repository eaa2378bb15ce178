"""The scale profile on loopback: replica processes sharing PostgreSQL, Redis and S3, behind HAProxy.

Used by tests/test_scale_e2e.py and bench/scale.py; the services themselves come from their own modules here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.live.haproxy import haproxy
from tests.live.replica import Replica, replicas, run_cli

PASSWORD = "correct horse battery staple"


@dataclass
class Stack:
    """A running deployment: the proxy's URL, the replicas, and the S3 bucket the images go to."""

    url: str
    replicas: list[Replica]
    bucket: str
    s3: Any
    env: dict[str, str] = field(default_factory=dict)


@contextmanager
def scale_stack(root: Path, tiny_sd_dir: Path, database_url: str, redis_url: str, s3: Any,
                names: tuple[str, ...] = ("r1", "r2"), users: tuple[str, ...] = ("alice",),
                env: dict[str, str] | None = None) -> Iterator[Stack]:
    """Start one replica per name on the tiny profile, with accounts `users` (password PASSWORD), and HAProxy
    configured from deploy/haproxy.cfg in front of them; stop everything after."""
    bucket = s3.create_bucket()
    common = {"ATELIER_PROFILE": "tiny", "ATELIER_WARMUP": "false", "ATELIER_DATABASE_URL": database_url,
              "ATELIER_REDIS_URL": redis_url,
              # The proxy is on loopback; its X-Forwarded-For names the client.
              "ATELIER_TRUSTED_PROXIES": json.dumps(["127.0.0.1"])}
    common |= {f"ATELIER_{key.upper()}": str(value) for key, value in s3.settings(bucket, "images").items()}
    common |= env or {}
    for name in names:  # each replica finds the tiny model in its own data dir, as a container would
        models = root / name / "models"
        models.mkdir(parents=True, exist_ok=True)
        if not (models / "tiny-sd").exists():
            (models / "tiny-sd").symlink_to(tiny_sd_dir, target_is_directory=True)
    for user in users:
        run_cli(["users", "add", user], common, root / names[0], stdin=f"{PASSWORD}\n{PASSWORD}\n")
    own = {name: {"ATELIER_REPLICA_NAME": name, "GRADIO_TEMP_DIR": str(root / f"{name}-gradio")} for name in names}
    with ExitStack() as stack:
        started = stack.enter_context(replicas(list(names), root, common, own=own))
        url = stack.enter_context(haproxy([(r.name, r.port) for r in started]))
        yield Stack(url=url + "/", replicas=started, bucket=bucket, s3=s3, env=common)
