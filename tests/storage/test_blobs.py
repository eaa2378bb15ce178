"""The stores on their own: storage URLs, and the S3 store's local copies (what Gradio is given) against moto."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from pydantic import ValidationError

from settings import Settings
from storage.blobs import S3Location, S3Store
from storage.files import Parameters, read_parameters
from tests.live.s3 import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, MotoS3

PARAMS = Parameters(prompt="a bucket", negative_prompt="", steps=1, sampler="Euler a", cfg_scale=7, seed=3,
                    width=8, height=8, model="tiny")


@pytest.mark.parametrize(("url", "location"), [
    ("s3://bucket", S3Location("bucket", "")),
    ("s3://bucket/", S3Location("bucket", "")),
    ("s3://bucket/a/b/", S3Location("bucket", "a/b")),
])
def test_a_storage_url_names_a_bucket_and_a_prefix(url: str, location: S3Location) -> None:
    assert S3Location.parse(url) == location
    assert location.key("2026-12-01/x.png") == (f"{location.prefix}/" if location.prefix else "") + "2026-12-01/x.png"


@pytest.mark.parametrize("url", ["/srv/images", "http://minio:9000/bucket", "s3:///prefix", "s3://b/p?x=1"])
def test_a_bad_storage_url_is_refused_with_the_expected_form(url: str) -> None:
    with pytest.raises(ValidationError, match="s3://bucket/prefix|no query"):
        Settings(storage_url=url)


def test_gradio_gets_a_local_copy_that_comes_back_after_a_sweep(s3_server: MotoS3, tmp_path: Path) -> None:
    bucket = s3_server.create_bucket()
    store = S3Store(S3Location(bucket, "p"), tmp_path / "cache", endpoint_url=s3_server.endpoint_url, region=REGION,
                    access_key_id=ACCESS_KEY_ID, secret_access_key=SECRET_ACCESS_KEY)
    store.put_png("d/a.png", Image.new("RGB", (8, 8), "red"), PARAMS)
    assert s3_server.keys(bucket) == ["p/d/a.png"]
    local = store.local_path("d/a.png")
    assert local == tmp_path / "cache" / "d" / "a.png"  # written there before the upload: no download
    stored = local.read_bytes()
    local.unlink()  # the age-based sweep took it
    again = store.local_path("d/a.png")
    assert again.read_bytes() == stored
    assert read_parameters(again) == PARAMS.to_text()
    assert [p.name for p in again.parent.iterdir()] == ["a.png"]  # the download's temp file is gone
    assert not store.local_path("d/missing.png").exists()
    assert store.local_file("d/a.png") is None  # REST streams or redirects, never a file of this machine


def _store(s3_server: MotoS3, tmp_path: Path) -> S3Store:
    return S3Store(S3Location(s3_server.create_bucket(), "p"), tmp_path / "cache",
                   endpoint_url=s3_server.endpoint_url, region=REGION, access_key_id=ACCESS_KEY_ID,
                   secret_access_key=SECRET_ACCESS_KEY)


def test_a_local_copy_costs_one_get_and_a_missing_object_one_request(s3_server: MotoS3, tmp_path: Path) -> None:
    store = _store(s3_server, tmp_path)
    store.put_png("d/a.png", Image.new("RGB", (8, 8), "red"), PARAMS)
    (tmp_path / "cache" / "d" / "a.png").unlink()
    sent: list[str] = []
    store.client.meta.events.register("before-call.s3", lambda model, **_: sent.append(model.name))
    assert store.local_path("d/a.png").is_file()
    assert sent == ["GetObject"]  # no HEAD before it
    sent.clear()
    assert not store.local_path("d/missing.png").exists()
    assert sent == ["GetObject"]


def test_a_copy_that_breaks_off_leaves_no_file_and_no_temp_file(s3_server: MotoS3, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import storage.blobs as blobs

    store = _store(s3_server, tmp_path)
    store.put_png("d/a.png", Image.new("RGB", (64, 64), "red"), PARAMS)
    (tmp_path / "cache" / "d" / "a.png").unlink()
    closed: list[bool] = []

    def broken(body: object) -> object:
        try:
            yield b"\x89PNG half"
            raise ConnectionError("the connection dropped")
        finally:
            closed.append(True)

    monkeypatch.setattr(blobs, "_stream_body", broken)
    with pytest.raises(ConnectionError):
        store.local_path("d/a.png")
    assert list((tmp_path / "cache" / "d").iterdir()) == []  # nothing half-written is visible
    assert closed == [True]
    monkeypatch.undo()
    assert store.local_path("d/a.png").read_bytes().startswith(b"\x89PNG")  # the next ask downloads it whole


def _bucket_exists(s3_server: MotoS3, bucket: str) -> bool:
    return bucket in {b["Name"] for b in s3_server.client().list_buckets()["Buckets"]}


def test_a_missing_bucket_is_created_when_the_credentials_may(s3_server: MotoS3, tmp_path: Path) -> None:
    from storage.blobs import open_store

    bucket = f"atelier-new-{tmp_path.name.lower().replace('_', '-')}"[:63]
    assert not _bucket_exists(s3_server, bucket)
    options = {"endpoint_url": s3_server.endpoint_url, "region": REGION, "access_key_id": ACCESS_KEY_ID,
               "secret_access_key": SECRET_ACCESS_KEY}
    store = open_store(f"s3://{bucket}/images", tmp_path / "images", tmp_path / "cache", **options)
    assert _bucket_exists(s3_server, bucket)
    store.put_png("d/a.png", Image.new("RGB", (8, 8), "red"), PARAMS)
    assert s3_server.keys(bucket) == ["images/d/a.png"]
    # A second replica starting against the same, now existing, bucket leaves it as it is.
    open_store(f"s3://{bucket}/images", tmp_path / "images", tmp_path / "cache2", **options)
    assert s3_server.keys(bucket) == ["images/d/a.png"]


class _MayNotCreate:
    """A moto client whose key may use objects but not create buckets (what a least-privilege key gets)."""

    def __init__(self, client: object, code: str) -> None:
        self.client = client
        self.code = code

    def __getattr__(self, name: str) -> object:
        return getattr(self.client, name)

    def create_bucket(self, **_: object) -> None:
        from botocore.exceptions import ClientError

        raise ClientError({"Error": {"Code": self.code, "Message": "Access Denied"}}, "CreateBucket")


@pytest.mark.parametrize(("code", "says"), [
    ("AccessDenied", ["does not exist and these credentials may not create it", "aws s3 mb s3://missing-bucket "
                      "--region eu-central-1", "mc mb ALIAS/missing-bucket", "arn:aws:s3:::missing-bucket/pre/*",
                      "s3:PutObject"]),
    ("BucketAlreadyExists", ["taken by another account", "ATELIER_STORAGE_URL"]),
])
def test_a_missing_bucket_that_may_not_be_created_says_what_to_create(s3_server: MotoS3, tmp_path: Path, code: str,
                                                                      says: list[str]) -> None:
    from storage.blobs import StorageUnavailable

    store = S3Store(S3Location("missing-bucket", "pre"), tmp_path / "cache", region="eu-central-1",
                    client=_MayNotCreate(s3_server.client(), code))
    with pytest.raises(StorageUnavailable) as refused:
        store.ensure_bucket()
    for words in says:
        assert words in str(refused.value)
    assert not _bucket_exists(s3_server, "missing-bucket")


def test_a_store_that_does_not_answer_at_start_only_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from tests.server import free_port

    store = S3Store(S3Location("b", ""), tmp_path / "cache", endpoint_url=f"http://127.0.0.1:{free_port()}",
                    region=REGION, access_key_id=ACCESS_KEY_ID, secret_access_key=SECRET_ACCESS_KEY)
    store.ensure_bucket()  # nothing listens there: the server still starts, and the log says why jobs will fail
    assert "could not reach the S3 store" in caplog.text
