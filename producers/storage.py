"""Where log files are read from: an S3 bucket (boto3) or a local folder laid out like one.

Both list keys in lexicographic order after a `start_after` key, as S3's ListObjectsV2 does, so the poller's
checkpoint logic is the same for both. S3 errors are translated here, from botocore's error codes, into
`SourceUnreadable` (terminal: says which permission or name to fix) or `TransientError` (retry later).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from trailhouse.config import Settings
from trailhouse.errors import SourceUnavailable, SourceUnreadable


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str


class ObjectStore(Protocol):
    url: str

    def list(self, prefix: str, start_after: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with `prefix` and sorts after `start_after`, in key order."""
        ...

    def get(self, key: str) -> bytes: ...


_DENIED = {"AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"}
_WRONG_REGION = {"PermanentRedirect", "AuthorizationHeaderMalformed", "301", "IllegalLocationConstraintException"}
_KMS_DENIED = {"KMS.AccessDeniedException", "KMS.KMSInvalidStateException"}


def _s3_error(exc: Exception, url: str, action: str) -> Exception:
    if isinstance(exc, EndpointConnectionError):
        return SourceUnavailable(f"{url}: cannot reach the S3 endpoint ({exc}); check the network or s3_endpoint_url")
    if not isinstance(exc, ClientError):
        return SourceUnavailable(f"{url}: {action} failed: {exc}")
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    if code in ("NoSuchBucket", "404") and action == "list":
        return SourceUnreadable(f"{url}: no such bucket; check the bucket name of the source (the trail's S3 bucket)")
    if code in _KMS_DENIED or "kms" in code.lower():
        return SourceUnreadable(
            f"{url}: {action} denied by KMS ({code}); the collector's role needs kms:Decrypt on the trail's key"
        )
    if code in _DENIED:
        permission = "s3:ListBucket on the bucket" if action == "list" else "s3:GetObject on its keys"
        return SourceUnreadable(f"{url}: access denied ({code}); the collector's role needs {permission}")
    if code in _WRONG_REGION:
        region = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-bucket-region")
        hint = f" it is in {region}; set s3_region={region}" if region else " set s3_region to the bucket's region"
        return SourceUnreadable(f"{url}: the bucket is in another region than the client's;{hint}")
    if code in ("SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "503", "500", "InternalError"):
        return SourceUnavailable(f"{url}: S3 is throttling or failing ({code}); retrying later", retry_after=5.0)
    return SourceUnreadable(f"{url}: {action} failed with {code}: {error.get('Message', exc)}")


class S3Store:
    def __init__(self, bucket: str, client: Any) -> None:
        self.bucket = bucket
        self.url = f"s3://{bucket}"
        self._client = client

    def list(self, prefix: str, start_after: str = "") -> Iterator[ObjectInfo]:
        paginator = self._client.get_paginator("list_objects_v2")
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if start_after:
            params["StartAfter"] = start_after
        try:
            for page in paginator.paginate(**params):
                for item in page.get("Contents", []):
                    yield ObjectInfo(item["Key"], item["Size"], item["ETag"].strip('"'))
        except (ClientError, BotoCoreError) as exc:
            raise _s3_error(exc, f"{self.url}/{prefix}", "list") from exc

    def get(self, key: str) -> bytes:
        try:
            return self._client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise _s3_error(exc, f"{self.url}/{key}", "read") from exc


class FolderStore:
    """A folder laid out like the bucket (as `aws s3 sync s3://bucket dir` leaves it); keys are relative paths."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = f"file://{root}"

    def list(self, prefix: str, start_after: str = "") -> Iterator[ObjectInfo]:
        if not self.root.is_dir():
            raise SourceUnreadable(f"{self.url}: no such folder; check the path of the source")
        # Descend only into the folder the prefix names, then walk in key order, skipping whole
        # sub-folders that sort before `start_after`.
        folder, _, _ = prefix.rpartition("/")
        base = self.root / folder if folder else self.root
        if base.is_dir():
            yield from self._walk(base, folder + "/" if folder else "", prefix, start_after)

    def _walk(self, directory: Path, key_prefix: str, prefix: str, start_after: str) -> Iterator[ObjectInfo]:
        try:
            entries = list(os.scandir(directory))
        except PermissionError as exc:
            raise SourceUnreadable(f"{self.url}/{key_prefix}: permission denied; make it readable") from exc
        # Keys compare with '/' after a folder's name, so sort folders by "name/" to match S3's key order.
        named = sorted((e.name + "/" if e.is_dir() else e.name, e) for e in entries)
        for name, entry in named:
            key = key_prefix + name
            if entry.is_dir():
                if not (key.startswith(prefix) or prefix.startswith(key)):
                    continue
                if start_after > key and not start_after.startswith(key):
                    continue
                yield from self._walk(Path(entry.path), key, prefix, start_after)
            elif key.startswith(prefix) and key > start_after and not name.endswith(".tmp"):
                stat = entry.stat()
                yield ObjectInfo(key, stat.st_size, f"{stat.st_size}-{stat.st_mtime_ns}")

    def get(self, key: str) -> bytes:
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError as exc:
            raise SourceUnavailable(f"{self.url}/{key} disappeared while being read") from exc
        except PermissionError as exc:
            raise SourceUnreadable(f"{self.url}/{key}: permission denied; make it readable") from exc


def fetch_ahead(
    store: ObjectStore, objects: Iterable[ObjectInfo], concurrency: int
) -> Iterator[tuple[ObjectInfo, bytes]]:
    """Each object with its bytes, in the order given, while up to `concurrency` downloads run ahead.

    Memory stays bounded by `concurrency` files; a download's error is raised when its turn comes, so what was
    yielded before it is unaffected. Downloads still queued are cancelled when the caller stops early.
    """
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="s3-get") as pool:
        window: deque[tuple[ObjectInfo, Future[bytes]]] = deque()
        try:
            for obj in objects:
                window.append((obj, pool.submit(store.get, obj.key)))
                if len(window) >= concurrency:
                    first, future = window.popleft()
                    yield first, future.result()
            while window:
                first, future = window.popleft()
                yield first, future.result()
        finally:
            for _, future in window:
                future.cancel()


def open_store(bucket_url: str, s3_client: Callable[[], Any]) -> ObjectStore:
    """The store of a source's `bucket` (s3://name or file:///path); `s3_client` is called only for S3."""
    if bucket_url.startswith("file://"):
        return FolderStore(Path(bucket_url.removeprefix("file://")))
    return S3Store(bucket_url.removeprefix("s3://"), s3_client())


def s3_client_factory(settings: Settings) -> Callable[[], Any]:
    """A factory of boto3 S3 clients (default credential chain), built lazily: folder-only setups need no AWS."""

    def make() -> Any:
        return boto3.session.Session().client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            region_name=settings.s3_region,
            config=Config(retries={"max_attempts": 5, "mode": "adaptive"}, max_pool_connections=16),
        )

    return make
