"""A real S3 HTTP API on loopback for tests: moto's server in a thread on a free port, one bucket per caller.

No MinIO package is reachable from CI's package mirrors; moto speaks the same REST API (PUT, GET, HEAD, DELETE,
server-side copy, multipart, presigned URLs), so boto3 goes through its whole HTTP stack as against AWS.
"""

from __future__ import annotations

import itertools
import logging
import os
from typing import Any

from moto.server import ThreadedMotoServer

# moto accepts any credentials; explicit ones keep boto3 from looking for a profile or an instance role.
ACCESS_KEY_ID = "atelier-test"
SECRET_ACCESS_KEY = "atelier-test-secret"  # moto takes any: not a real secret
REGION = "us-east-1"


class MotoS3:
    """One running moto server; `create_bucket()` hands out a fresh, empty bucket per caller."""

    def __init__(self) -> None:
        # Port 0: the server binds a free port itself, so no other process can take it in between.
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.endpoint_url = ""
        self._names = itertools.count(1)

    def start(self) -> MotoS3:
        """Serve until `stop()`."""
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per request in the test output
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        return self

    def client(self) -> Any:
        """A boto3 S3 client of this server (to look at the bucket from outside the code under test)."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=REGION,
                            aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY)

    def create_bucket(self) -> str:
        """A new empty bucket; its name."""
        name = f"atelier-{os.getpid()}-{next(self._names)}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str) -> list[str]:
        """Every object key in `bucket`, sorted."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    def settings(self, bucket: str, prefix: str = "atelier") -> dict[str, Any]:
        """Settings overrides that store images in `bucket` under `prefix`."""
        return {"storage_url": f"s3://{bucket}/{prefix}", "s3_endpoint_url": self.endpoint_url,
                "s3_region": REGION, "s3_access_key_id": ACCESS_KEY_ID, "s3_secret_access_key": SECRET_ACCESS_KEY}

    def stop(self) -> None:
        """Shut the server down."""
        self.server.stop()
