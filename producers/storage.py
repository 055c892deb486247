"""Where log files are read from: an S3 bucket (boto3) or a local folder laid out like one.

Both list keys in lexicographic order after a `start_after` key, as S3's ListObjectsV2 does, so the poller's
checkpoint logic is the same for both. S3 errors are translated here, from botocore's error codes, into
`SourceUnreadable` (terminal: says which permission or name to fix) or `TransientError` (retry later).
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import SpooledTemporaryFile
from typing import IO, Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError
from urllib3.exceptions import HTTPError as Urllib3Error

from trailhouse.errors import SourceUnavailable, SourceUnreadable

log = logging.getLogger(__name__)

DOWNLOAD_PIECE_BYTES = 1024 * 1024
DOWNLOAD_ATTEMPTS = 4  # on top of botocore's own retries: a download that breaks mid-body starts over


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str


@dataclass(frozen=True)
class ObjectHead:
    """What HeadObject says about an object, as far as trailhouse cares."""

    size: int
    encryption: str | None = None  # "AES256", "aws:kms", "aws:kms:dsse" or None
    kms_key_id: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)  # x-amz-meta-*, without the prefix


class ObjectStore(Protocol):
    url: str

    def list(self, prefix: str, start_after: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with `prefix` and sorts after `start_after`, in key order."""
        ...

    def folders(self, prefix: str) -> list[str]:
        """The 'sub-folders' of `prefix` (S3 common prefixes with delimiter '/'), each ending in '/', in order."""
        ...

    def get(self, key: str) -> bytes: ...

    def fetch(self, key: str, spool_bytes: int) -> IO[bytes]:
        """The object's bytes as a file positioned at 0, read whole (to memory up to `spool_bytes`, then to a
        temporary file); the caller closes it."""
        ...

    def head(self, key: str) -> ObjectHead: ...


_DENIED = {"AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"}
_WRONG_REGION = {"PermanentRedirect", "AuthorizationHeaderMalformed", "301", "IllegalLocationConstraintException"}
_KMS_DENIED = {"KMS.AccessDeniedException", "KMS.KMSInvalidStateException"}


def _s3_error(exc: Exception, url: str, action: str) -> Exception:
    """A botocore error as a trailhouse error, chosen by its structured code (the message only says more)."""
    if isinstance(exc, EndpointConnectionError):
        return SourceUnavailable(f"{url}: cannot reach the S3 endpoint ({exc}); check the network or s3_endpoint_url")
    if isinstance(exc, NoCredentialsError):
        return SourceUnreadable(
            f"{url}: no AWS credentials found; give the collector credentials (environment, profile, instance or "
            "pod role) or register the source with --profile / --role-arn",
            reason="no_credentials",
        )
    if not isinstance(exc, ClientError):
        return SourceUnavailable(f"{url}: {action} failed: {exc}")
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    if exc.operation_name == "AssumeRole":
        return SourceUnreadable(
            f"{url}: cannot assume the source's role ({code}: {error.get('Message', '')}); the role's trust policy "
            "must allow the collector's principal (and the external id, if one is set), and the collector needs "
            "sts:AssumeRole on the role",
            reason="assume_role_denied",
        )
    if code in ("NoSuchBucket", "404") and action == "list":
        return SourceUnreadable(
            f"{url}: no such bucket; check the bucket name of the source (the trail's S3 bucket)",
            reason="no_such_bucket",
        )
    if code in ("NoSuchKey", "404"):
        return SourceUnavailable(f"{url}: the object disappeared before it was read ({code})")
    if code in _KMS_DENIED or code.startswith("KMS."):
        return SourceUnreadable(
            f"{url}: {action} denied by KMS ({code}); the collector's role needs kms:Decrypt on the trail's key",
            reason="kms_denied",
        )
    if code in _DENIED:
        permission = "s3:ListBucket on the bucket" if action == "list" else "s3:GetObject on its keys"
        return SourceUnreadable(
            f"{url}: access denied ({code}); the collector's role needs {permission}", reason="access_denied"
        )
    if code in _WRONG_REGION:
        region = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-bucket-region")
        hint = f" it is in {region}; set s3_region={region}" if region else " set s3_region to the bucket's region"
        return SourceUnreadable(
            f"{url}: the bucket is in another region than the client's;{hint}", reason="wrong_region"
        )
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

    def folders(self, prefix: str) -> list[str]:
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            return [
                common["Prefix"]
                for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/")
                for common in page.get("CommonPrefixes", [])
            ]
        except (ClientError, BotoCoreError) as exc:
            raise _s3_error(exc, f"{self.url}/{prefix}", "list") from exc

    def get(self, key: str) -> bytes:
        try:
            return self._client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise _s3_error(exc, f"{self.url}/{key}", "read") from exc
        except (OSError, Urllib3Error) as exc:
            raise SourceUnavailable(f"{self.url}/{key}: the download broke off ({exc}); retrying later") from exc

    def fetch(self, key: str, spool_bytes: int) -> IO[bytes]:
        spool = SpooledTemporaryFile(max_size=spool_bytes)  # noqa: SIM115 - handed to the caller
        try:
            body = self._client.get_object(Bucket=self.bucket, Key=key)["Body"]
            for piece in body.iter_chunks(DOWNLOAD_PIECE_BYTES):
                spool.write(piece)
            spool.seek(0)
            return spool  # type: ignore[return-value]
        except (ClientError, BotoCoreError) as exc:
            spool.close()
            raise _s3_error(exc, f"{self.url}/{key}", "read") from exc
        except (OSError, Urllib3Error) as exc:
            spool.close()
            raise SourceUnavailable(f"{self.url}/{key}: the download broke off ({exc}); retrying later") from exc
        except BaseException:
            spool.close()
            raise

    def head(self, key: str) -> ObjectHead:
        try:
            head = self._client.head_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise _s3_error(exc, f"{self.url}/{key}", "read") from exc
        return ObjectHead(
            size=head.get("ContentLength", 0),
            encryption=head.get("ServerSideEncryption"),
            kms_key_id=head.get("SSEKMSKeyId"),
            metadata=dict(head.get("Metadata") or {}),
        )


class FolderStore:
    """A folder laid out like the bucket (as `aws s3 sync s3://bucket dir` leaves it); keys are relative paths."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = f"file://{root}"

    def list(self, prefix: str, start_after: str = "") -> Iterator[ObjectInfo]:
        if not self.root.is_dir():
            raise SourceUnreadable(f"{self.url}: no such folder; check the path of the source", reason="no_such_folder")
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
            raise SourceUnreadable(
                f"{self.url}/{key_prefix}: permission denied; make it readable", reason="access_denied"
            ) from exc
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

    def folders(self, prefix: str) -> list[str]:
        if not self.root.is_dir():
            raise SourceUnreadable(f"{self.url}: no such folder; check the path of the source", reason="no_such_folder")
        folder, _, start = prefix.rpartition("/")
        base = self.root / folder if folder else self.root
        if not base.is_dir():
            return []
        head = folder + "/" if folder else ""
        return sorted(f"{head}{e.name}/" for e in os.scandir(base) if e.is_dir() and e.name.startswith(start))

    def get(self, key: str) -> bytes:
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError as exc:
            raise SourceUnavailable(f"{self.url}/{key} disappeared while being read") from exc
        except PermissionError as exc:
            raise SourceUnreadable(
                f"{self.url}/{key}: permission denied; make it readable", reason="access_denied"
            ) from exc

    def fetch(self, key: str, spool_bytes: int) -> IO[bytes]:
        try:
            return open(self.root / key, "rb")  # noqa: SIM115 - handed to the caller
        except FileNotFoundError as exc:
            raise SourceUnavailable(f"{self.url}/{key} disappeared while being read") from exc
        except PermissionError as exc:
            raise SourceUnreadable(
                f"{self.url}/{key}: permission denied; make it readable", reason="access_denied"
            ) from exc

    def head(self, key: str) -> ObjectHead:
        try:
            return ObjectHead(size=(self.root / key).stat().st_size)
        except FileNotFoundError as exc:
            raise SourceUnavailable(f"{self.url}/{key} disappeared") from exc


def fetch_with_retries(store: ObjectStore, key: str, spool_bytes: int, attempts: int = DOWNLOAD_ATTEMPTS) -> IO[bytes]:
    """`store.fetch`, tried again with exponential backoff (1, 2, 4 s, or what the error asks) on transient
    errors; botocore already retried each request (adaptive mode), this covers bodies that break mid-download."""
    for attempt in range(1, attempts + 1):
        try:
            return store.fetch(key, spool_bytes)
        except SourceUnavailable as exc:
            if attempt == attempts:
                raise
            delay = exc.retry_after or float(2 ** (attempt - 1))
            log.warning("%s/%s: %s; attempt %d of %d in %.0fs", store.url, key, exc, attempt + 1, attempts, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def fetch_ahead(
    store: ObjectStore, objects: Iterable[ObjectInfo], concurrency: int, spool_bytes: int
) -> Iterator[tuple[ObjectInfo, IO[bytes]]]:
    """Each object with its bytes (a file positioned at 0), in the order given, while up to `concurrency`
    downloads run ahead.

    Memory stays bounded by `concurrency` x `spool_bytes`: bigger downloads spill to temporary files. A file is
    closed when the caller asks for the next one, so use it before. A download's error is raised when its turn
    comes, so what was yielded before it is unaffected. Downloads still queued are cancelled, and those running
    closed when they finish, if the caller stops early.
    """
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="s3-get") as pool:
        window: deque[tuple[ObjectInfo, Future[IO[bytes]]]] = deque()

        def take() -> tuple[ObjectInfo, Future[IO[bytes]]]:
            return window.popleft()

        try:
            for obj in objects:
                window.append((obj, pool.submit(fetch_with_retries, store, obj.key, spool_bytes)))
                if len(window) >= concurrency:
                    first, future = take()
                    with future.result() as body:
                        yield first, body
            while window:
                first, future = take()
                with future.result() as body:
                    yield first, body
        finally:
            for _, future in window:
                if not future.cancel():
                    future.add_done_callback(_close_result)


def _close_result(future: Future[IO[bytes]]) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result().close()


def open_store(bucket_url: str, s3_client: Callable[[], Any]) -> ObjectStore:
    """The store of a source's `bucket` (s3://name or file:///path); `s3_client` is called only for S3."""
    if bucket_url.startswith("file://"):
        return FolderStore(Path(bucket_url.removeprefix("file://")))
    return S3Store(bucket_url.removeprefix("s3://"), s3_client())


def newest_key(store: ObjectStore, lane_prefix: str) -> str | None:
    """The greatest key under a lane's prefix (`.../<region>/`), found through its newest year, month and day
    folders: a handful of requests instead of listing years of keys."""
    prefix = lane_prefix
    for _ in range(3):  # YYYY/, MM/, DD/
        folders = store.folders(prefix)
        if not folders:
            break
        prefix = folders[-1]
    last = None
    for obj in store.list(prefix):
        last = obj.key
    return last
