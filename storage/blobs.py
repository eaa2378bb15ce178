"""Image objects behind one small interface: a local folder (the default) or an S3-compatible bucket.

Keys are the relative paths the database stores (`2026-12-01/<32 random hex digits>.png`). Every write is all or
nothing: a local file appears by rename, an S3 object by a completed PUT (or a completed multipart upload), so a
reader never sees half an image. Gradio serves outputs from local files, so the S3 store keeps a disposable local copy
of what it wrote or read in a cache folder (swept by age with Gradio's scratch files).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from settings import split_storage_url
from storage.files import Parameters, atomic_file, write_png_atomic

if TYPE_CHECKING:
    from PIL.Image import Image

log = logging.getLogger(__name__)

CHUNK = 256 * 1024
TEMP_GLOB = ".*.tmp"  # the names write_png_atomic and the copies below give half-written files


@dataclass
class Blob:
    """An object opened for reading: its size and its bytes, chunk by chunk."""

    size: int
    chunks: Iterator[bytes]


class BlobStore(ABC):
    """Where finished images live."""

    @abstractmethod
    def put_png(self, key: str, image: Image, parameters: Parameters | None) -> None:
        """Store `image` as a PNG with its `parameters` chunk (none for a job's input image) under `key`, all at
        once or not at all."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None:
        """Store `data` (an image's bytes, exactly as given: an import keeps every byte) under `key`, all at once or
        not at all."""

    @abstractmethod
    def copy(self, src: str, dest: str) -> None:
        """Give `dest` the bytes of `src`; deleting `src` later leaves `dest` whole."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object (and any local copy); a missing one is not an error."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """True when the object is stored."""

    @abstractmethod
    def local_path(self, key: str) -> Path:
        """A local file with the object's bytes, for Gradio, which serves outputs from disk (may not exist when
        the object does not)."""

    @abstractmethod
    def local_file(self, key: str) -> Path | None:
        """The object's own file when the store is a folder (a server sends it with sendfile and ranges); None
        for a remote store or a missing object."""

    @abstractmethod
    def open(self, key: str) -> Blob | None:
        """The object's bytes as a stream; None when it does not exist."""

    def presigned_url(self, key: str, ttl_s: int) -> str | None:
        """A URL that fetches the object without credentials for `ttl_s` seconds; None where the store has none."""
        return None

    @abstractmethod
    def recover(self) -> int:
        """Remove files half-written when the process died; returns how many went."""


class LocalStore(BlobStore):
    """A folder on this machine (a shared volume serves several replicas): today's layout, byte for byte."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def put_png(self, key: str, image: Image, parameters: Parameters | None) -> None:
        """Written via a temp file in the same folder and a rename."""
        write_png_atomic(image, self.root / key, parameters)

    def put_bytes(self, key: str, data: bytes) -> None:
        """Written via a temp file in the same folder and a rename."""
        write_bytes_atomic(self.root / key, data)

    def copy(self, src: str, dest: str) -> None:
        """A hard link where the filesystem allows (no extra space), else an atomic copy."""
        link_or_copy(self.root / src, self.root / dest)

    def delete(self, key: str) -> None:
        """Unlink the file; a hard-linked copy keeps the bytes."""
        (self.root / key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        """True when the file is there."""
        return (self.root / key).is_file()

    def local_path(self, key: str) -> Path:
        """The file itself."""
        return self.root / key

    def local_file(self, key: str) -> Path | None:
        """The file itself, when it exists."""
        path = self.root / key
        return path if path.is_file() else None

    def open(self, key: str) -> Blob | None:
        """The file read in chunks."""
        try:
            handle = (self.root / key).open("rb")
        except FileNotFoundError:
            return None
        return Blob(os.fstat(handle.fileno()).st_size, _read_chunks(handle))

    def recover(self) -> int:
        """Remove temp files left by writes that never reached their rename."""
        return _remove_temp_files(self.root)


def _read_chunks(handle: Any) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(CHUNK):
            yield chunk


def _remove_temp_files(root: Path) -> int:
    removed = 0
    for tmp in root.rglob(TEMP_GLOB):
        tmp.unlink(missing_ok=True)
        removed += 1
    return removed


def write_bytes_atomic(dest: Path, data: bytes) -> None:
    """Give `dest` exactly `data` via a temp file in the same folder and a rename: never a partial file."""
    with atomic_file(dest) as handle:
        handle.write(data)


def link_or_copy(src: Path, dest: Path) -> None:
    """Give `dest` the bytes of `src`: a hard link where the filesystem allows, else an atomic copy."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        tmp = dest.with_name(f".{dest.name}.tmp")
        try:
            shutil.copyfile(src, tmp)
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key prefix, from `s3://bucket/prefix`."""

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> S3Location:
        """Read `s3://bucket` or `s3://bucket/some/prefix`; ValueError with the reason otherwise."""
        return cls(*split_storage_url(url))

    def key(self, name: str) -> str:
        """The object key of a stored name."""
        return f"{self.prefix}/{name}" if self.prefix else name


class S3Store(BlobStore):
    """An S3-compatible bucket (AWS S3, MinIO, Ceph RGW, Cloudflare R2…) through boto3."""

    def __init__(self, location: S3Location, cache_dir: Path, *, endpoint_url: str | None = None,
                 region: str | None = None, access_key_id: str | None = None, secret_access_key: str | None = None,
                 client: Any = None) -> None:
        self.location = location
        self.cache_dir = cache_dir
        self.region = region
        if client is None:
            import boto3
            from botocore.config import Config

            # A custom endpoint (MinIO and most self-hosted stores) wants path-style addresses: a bucket
            # sub-domain of `minio:9000` resolves nowhere. AWS itself takes the default (virtual-hosted).
            # A 10 s connect timeout (botocore's is 60 s, times three attempts): start-up checks the bucket, and a
            # store that does not answer should fail a job in seconds, not minutes.
            config = Config(signature_version="s3v4", retries={"max_attempts": 3, "mode": "standard"},
                            connect_timeout=10,
                            s3={"addressing_style": "path"} if endpoint_url else {})
            client = boto3.client("s3", endpoint_url=endpoint_url or None, region_name=region or None,
                                  aws_access_key_id=access_key_id or None,
                                  aws_secret_access_key=secret_access_key or None, config=config)
        self.client = client

    def ensure_bucket(self) -> None:
        """Make sure the bucket exists: create it when it is missing and the credentials may; when they may not,
        raise StorageUnavailable saying exactly what to create. A store that cannot be reached only logs a warning
        (jobs then fail with the reason until it answers)."""
        from botocore.exceptions import BotoCoreError, ClientError

        bucket = self.location.bucket
        try:
            self.client.head_bucket(Bucket=bucket)
            return
        except ClientError as err:
            if _code(err) in {"403", "AccessDenied", "Forbidden"}:
                return  # HeadBucket needs s3:ListBucket, which Atelier's key need not have: the bucket may well exist
            if _code(err) not in {"404", "NoSuchBucket", "NotFound"}:
                raise StorageUnavailable(f"S3 bucket {bucket!r}: {_describe(err)}") from err
        except BotoCoreError as err:
            log.warning("could not reach the S3 store to check bucket %r (%s); image jobs fail until it answers",
                        bucket, err)
            return
        self._create_bucket()

    def _create_bucket(self) -> None:
        from botocore.exceptions import ClientError

        bucket = self.location.bucket
        options: dict[str, Any] = {}
        if self.region and self.region != "us-east-1":  # us-east-1 is the one region that refuses the constraint
            options["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            self.client.create_bucket(Bucket=bucket, **options)
        except ClientError as err:
            if _code(err) == "BucketAlreadyOwnedByYou":
                return  # another replica created it meanwhile
            if _code(err) == "BucketAlreadyExists":
                raise StorageUnavailable(f"S3 bucket {bucket!r} does not exist for these credentials and its name "
                                         f"is taken by another account (bucket names are global on AWS): choose "
                                         f"another name in ATELIER_STORAGE_URL.") from err
            raise StorageUnavailable(missing_bucket_message(bucket, self.location.prefix, self.region, err)) from err
        log.warning("created the S3 bucket %r (it did not exist)", bucket)

    def _missing(self, err: Exception) -> bool:
        from botocore.exceptions import ClientError

        return isinstance(err, ClientError) and _code(err) in {"404", "NoSuchKey", "NotFound"}

    def put_png(self, key: str, image: Image, parameters: Parameters | None) -> None:
        """Encode into the local cache (Gradio shows that file), then upload: the object appears only when the
        PUT (or the multipart upload) completes. A failed upload leaves neither the object nor the local copy."""
        local = write_png_atomic(image, self.cache_dir / key, parameters)
        target = self.location.key(key)
        try:
            self.client.upload_file(str(local), self.location.bucket, target,
                                    ExtraArgs={"ContentType": "image/png"})
        except BaseException:
            local.unlink(missing_ok=True)
            # A timeout may hide an upload that did complete: make sure no orphan stays behind.
            self._delete_object(target)
            raise

    def put_bytes(self, key: str, data: bytes) -> None:
        """One PUT: the object appears whole or not at all; a failed one leaves no orphan behind."""
        target = self.location.key(key)
        try:
            self.client.put_object(Bucket=self.location.bucket, Key=target, Body=data, ContentType="image/png")
        except BaseException:
            self._delete_object(target)
            raise

    def copy(self, src: str, dest: str) -> None:
        """A server-side copy (no bytes through this machine); deleting `src` later leaves `dest` whole."""
        bucket = self.location.bucket
        self.client.copy_object(Bucket=bucket, Key=self.location.key(dest),
                                CopySource={"Bucket": bucket, "Key": self.location.key(src)})
        cached = self.cache_dir / src
        if cached.is_file():  # the UI shows the copy at once, without a download
            with contextlib.suppress(OSError):  # only a cache: local_path downloads it when asked
                link_or_copy(cached, self.cache_dir / dest)

    def _delete_object(self, target: str) -> None:
        try:
            self.client.delete_object(Bucket=self.location.bucket, Key=target)
        except Exception:  # best effort while another error is on its way up
            log.warning("could not remove %s after a failed upload", target, exc_info=True)

    def delete(self, key: str) -> None:
        """Delete the object and the local copy (a copy made by `copy` is an object of its own and stays)."""
        self.client.delete_object(Bucket=self.location.bucket, Key=self.location.key(key))
        (self.cache_dir / key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        """A HEAD request on the object."""
        try:
            self.client.head_object(Bucket=self.location.bucket, Key=self.location.key(key))
        except Exception as err:
            if self._missing(err):
                return False
            raise
        return True

    def local_path(self, key: str) -> Path:
        """The cached copy, downloaded (via a temp file and a rename) when it is not there yet."""
        path = self.cache_dir / key
        if path.is_file():
            os.utime(path)  # in use again: the age-based sweep keeps it
            return path
        # One GET: boto3's download_fileobj sends a HEAD first to plan ranged parts, a round trip more for an
        # image of a few hundred kB.
        blob = self.open(key)
        if blob is None:
            return path  # not in the bucket: a path that does not exist, as for any missing file
        try:
            # A cached copy, not the only one: no fsync (the bucket keeps the original).
            with atomic_file(path, durable=False) as handle:
                for chunk in blob.chunks:
                    handle.write(chunk)
        finally:
            close = getattr(blob.chunks, "close", None)
            if close is not None:  # the response goes back to the pool even when the copy failed
                close()
        return path

    def local_file(self, key: str) -> Path | None:
        """None: the object lives in the bucket, not in a file of this machine."""
        return None

    def open(self, key: str) -> Blob | None:
        """A GET whose body streams as it is read."""
        try:
            answer = self.client.get_object(Bucket=self.location.bucket, Key=self.location.key(key))
        except Exception as err:
            if self._missing(err):
                return None
            raise
        body = answer["Body"]
        return Blob(int(answer["ContentLength"]), _stream_body(body))

    def presigned_url(self, key: str, ttl_s: int) -> str | None:
        """A signed GET URL valid for `ttl_s` seconds."""
        return str(self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.location.bucket, "Key": self.location.key(key)},
            ExpiresIn=ttl_s))

    def recover(self) -> int:
        """Remove half-written files from the local cache (the bucket never holds a partial object)."""
        return _remove_temp_files(self.cache_dir) if self.cache_dir.is_dir() else 0


class StorageUnavailable(RuntimeError):
    """The configured store cannot hold images as configured (a missing bucket that may not be created…)."""


def _code(err: Any) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _describe(err: Any) -> str:
    error = err.response.get("Error", {})
    return f"{error.get('Code', '?')}: {error.get('Message', '')}".rstrip(": ")


def missing_bucket_message(bucket: str, prefix: str, region: str | None, err: Any) -> str:
    """What to create, and what the key needs, when the bucket is missing and these credentials may not create it."""
    where = f" --region {region}" if region else ""
    objects = f"arn:aws:s3:::{bucket}/{prefix + '/' if prefix else ''}*"
    return (f"S3 bucket {bucket!r} does not exist and these credentials may not create it ({_describe(err)}). "
            f"Create it once with an account that may (AWS: `aws s3 mb s3://{bucket}{where}`; MinIO: "
            f"`mc mb ALIAS/{bucket}`), and give Atelier's key s3:PutObject, s3:GetObject and s3:DeleteObject on "
            f"{objects}; then start Atelier again.")


def _stream_body(body: Any) -> Iterator[bytes]:
    try:
        yield from body.iter_chunks(CHUNK)
    finally:
        body.close()


def open_store(url: str, images_dir: Path, cache_dir: Path, **s3_options: Any) -> BlobStore:
    """The store a storage URL names: "" is the local images folder, `s3://bucket/prefix` a bucket (created when
    missing and the credentials may; StorageUnavailable says what to create when they may not)."""
    if not url:
        return LocalStore(images_dir)
    store = S3Store(S3Location.parse(url), cache_dir, **s3_options)
    store.ensure_bucket()
    return store
