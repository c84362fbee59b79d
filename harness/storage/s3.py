"""A small S3 client: bounded retries with backoff, idempotent buckets, multipart transfers.

Every request goes through `S3Client._call`, which retries transient failures (connection
refused/reset, time-outs, 5xx, throttling) a bounded number of times with exponential backoff
and turns everything else into one-line `StorageError`s. Credentials come from the environment
(or the service that started the server) and never appear in messages or logs.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from omegaconf import DictConfig

from harness.errors import HarnessError

log = logging.getLogger(__name__)
T = TypeVar("T")
MB = 1024 * 1024
_READ_CHUNK = 8 * MB  # streaming GET granularity (hash-as-you-go)
SHA256_META = "sha256"  # user-metadata key (x-amz-meta-sha256) carrying the object's digest

# S3 error codes worth another try; everything else is final.
_TRANSIENT_CODES = {
    "SlowDown",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "Throttling",
    "ThrottlingException",
    "503",
    "500",
    "502",
    "504",
}
_AUTH_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "InvalidToken",
    "ExpiredToken",
    "403",
}
_MISSING_CODES = {"NoSuchKey", "404", "NotFound", "NoSuchBucket"}


class StorageError(HarnessError):
    """An S3 operation failed; the message names the object and the problem."""


class StorageAuthError(StorageError):
    """The server rejected the credentials."""


class StorageNotFound(StorageError):
    """The bucket or object does not exist."""


class StorageUnavailable(StorageError):
    """The server could not be reached (after the bounded retries)."""


@dataclass(frozen=True)
class Credentials:
    """An access key pair; repr hides the secret so it never reaches a log."""

    access_key_id: str
    secret_access_key: str = field(repr=False)

    def __repr__(self) -> str:
        return f"Credentials(access_key_id={self.access_key_id[:4]}…, secret=***)"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Credentials | None:
        """AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY from `env` (default os.environ), or None."""
        env = os.environ if env is None else env
        key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
        return cls(key, secret) if key and secret else None


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries: `max_attempts` tries in all, delay base*2**(n-1) capped at max_delay."""

    max_attempts: int = 4
    base_delay: float = 0.2
    max_delay: float = 2.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        return min(self.max_delay, self.base_delay * 2 ** (attempt - 1))


@dataclass(frozen=True)
class S3Settings:
    """Everything needed to talk to one S3 endpoint (from `storage` config + environment)."""

    endpoint_url: str | None
    bucket: str
    region: str = "us-east-1"
    credentials: Credentials | None = None
    addressing_style: str = "path"
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    max_pool_connections: int = 16
    retry: RetryPolicy = RetryPolicy()
    multipart_threshold: int = 16 * MB
    part_size: int = 16 * MB
    max_concurrency: int = 4
    download_part_size: int = 0

    @classmethod
    def from_config(
        cls,
        storage: DictConfig,
        *,
        endpoint_url: str | None = None,
        credentials: Credentials | None = None,
    ) -> S3Settings:
        """Build from the `storage` config group; explicit arguments beat config and env."""
        endpoint = endpoint_url or storage.get("endpoint_url") or os.environ.get("S3_ENDPOINT_URL")
        part_size = int(float(storage.multipart.part_size_mb) * MB)
        if part_size < 5 * MB:
            raise StorageError(f"storage.multipart.part_size_mb={part_size / MB} < 5 (S3 minimum)")
        bucket = str(storage.bucket)
        if len(bucket) < 3:
            raise StorageError(f"storage.bucket={bucket!r}: bucket names need >= 3 characters")
        return cls(
            endpoint_url=str(endpoint).rstrip("/") if endpoint else None,
            bucket=bucket,
            region=str(storage.region),
            credentials=credentials or Credentials.from_env(),
            addressing_style=str(storage.addressing_style),
            connect_timeout=float(storage.connect_timeout_s),
            read_timeout=float(storage.read_timeout_s),
            max_pool_connections=int(storage.max_pool_connections),
            retry=RetryPolicy(
                max_attempts=max(1, int(storage.retries.max_attempts)),
                base_delay=float(storage.retries.backoff_base_s),
                max_delay=float(storage.retries.backoff_max_s),
            ),
            multipart_threshold=int(float(storage.multipart.threshold_mb) * MB),
            part_size=part_size,
            max_concurrency=max(1, int(storage.multipart.max_concurrency)),
            download_part_size=int(float(storage.multipart.download_part_mb) * MB),
        )


@dataclass
class ObjectInfo:
    """Size, ETag and user metadata of one object."""

    key: str
    size: int
    etag: str
    metadata: dict[str, str]
    last_modified: Any = None


def _error_code(exc: Exception) -> str:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(
            err.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        )
        return code
    return ""


def is_transient(exc: Exception) -> bool:
    """True for failures another try may fix: connection problems, time-outs, 5xx, throttling."""
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

    if isinstance(exc, (ConnectionError, HTTPClientError)):
        return True
    if isinstance(exc, ClientError):
        return _error_code(exc) in _TRANSIENT_CODES
    return False


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]


class S3Client:
    """One bucket on one endpoint: put/get/head/list/delete with bounded retries."""

    def __init__(self, settings: S3Settings) -> None:
        import boto3
        from botocore.config import Config

        self.settings = settings
        self.bucket = settings.bucket
        creds = settings.credentials
        config = Config(
            region_name=settings.region,
            signature_version="s3v4",
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            max_pool_connections=max(settings.max_pool_connections, settings.max_concurrency + 2),
            # Retries are ours (bounded, logged, testable); botocore's would multiply them.
            retries={"total_max_attempts": 1, "mode": "standard"},
            s3={"addressing_style": settings.addressing_style},
            # We verify integrity with our own sha256; skip the extra CRC pass over every body.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        session = boto3.session.Session()
        self._client = session.client(
            "s3",
            endpoint_url=settings.endpoint_url,
            aws_access_key_id=creds.access_key_id if creds else None,
            aws_secret_access_key=creds.secret_access_key if creds else None,
            region_name=settings.region,
            config=config,
        )
        self.attempts = 0  # total requests sent (tests read it to see retries happen)

    @property
    def where(self) -> str:
        """Human-readable location of the bucket (no credentials)."""
        return f"s3://{self.bucket} at {self.settings.endpoint_url or 'AWS default endpoint'}"

    def uri(self, key: str) -> str:
        """s3:// URI of `key`."""
        return f"s3://{self.bucket}/{key}"

    @property
    def raw(self) -> Any:
        """The underlying boto3 client (for baselines and tests; no retries)."""
        return self._client

    # -- the one place requests are sent -------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run `fn` with bounded retries; map failures to StorageError naming `what`."""
        from botocore.exceptions import ClientError, NoCredentialsError

        policy = self.settings.retry
        for attempt in range(1, policy.max_attempts + 1):
            self.attempts += 1
            try:
                return fn()
            except NoCredentialsError as exc:
                raise StorageAuthError(
                    f"{what}: no S3 credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
                ) from exc
            except ClientError as exc:
                code = _error_code(exc)
                if code in _AUTH_CODES:
                    raise StorageAuthError(
                        f"{what}: S3 authentication failed at {self.settings.endpoint_url} "
                        f"({code}): check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
                    ) from exc
                if code in _MISSING_CODES:
                    raise StorageNotFound(f"{what}: not found ({code})") from exc
                if not is_transient(exc) or attempt == policy.max_attempts:
                    raise StorageError(f"{what}: {code}: {_short(exc)}") from exc
                last = exc
            except Exception as exc:
                if not is_transient(exc):
                    raise
                if attempt == policy.max_attempts:
                    raise StorageUnavailable(
                        f"{what}: S3 unreachable at {self.settings.endpoint_url} after "
                        f"{attempt} attempts ({_short(exc)})"
                    ) from exc
                last = exc
            wait = policy.delay(attempt)
            log.warning(
                "%s: %s; retry %d/%d in %.1fs",
                what,
                _short(last),
                attempt,
                policy.max_attempts - 1,
                wait,
            )
            time.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- bucket -------------------------------------------------------------------------------
    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (idempotent, safe under races)."""
        try:
            self._call(
                f"head bucket {self.bucket}", lambda: self._client.head_bucket(Bucket=self.bucket)
            )
            return
        except StorageNotFound:
            pass
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if self.settings.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.settings.region}
        try:
            self._call(f"create bucket {self.bucket}", lambda: self._client.create_bucket(**kwargs))
            log.info("created bucket %s", self.where)
        except StorageError as exc:
            cause = exc.__cause__
            if _error_code(cause) in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                return
            raise

    # -- objects ------------------------------------------------------------------------------
    def put_bytes(self, key: str, data: bytes | memoryview, metadata: Mapping[str, str]) -> None:
        """Upload `data` to `key` with user `metadata`; multipart above the threshold."""
        view = memoryview(data)
        meta = dict(metadata)
        what = f"upload {self.uri(key)}"
        if len(view) < self.settings.multipart_threshold:
            body = data if isinstance(data, bytes) else bytes(view)  # no 2nd copy of big bytes
            self._call(
                what,
                lambda: self._client.put_object(
                    Bucket=self.bucket, Key=key, Body=body, Metadata=meta
                ),
            )
            return
        self._multipart_put(key, view, meta, what)

    def _multipart_put(self, key: str, view: memoryview, meta: dict[str, str], what: str) -> None:
        size, step = len(view), self.settings.part_size
        created = self._call(
            what,
            lambda: self._client.create_multipart_upload(
                Bucket=self.bucket, Key=key, Metadata=meta
            ),
        )
        upload_id = created["UploadId"]

        def part(number: int) -> dict[str, Any]:
            chunk = bytes(view[(number - 1) * step : number * step])
            resp = self._call(
                f"{what} (part {number})",
                lambda: self._client.upload_part(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk
                ),
            )
            return {"PartNumber": number, "ETag": resp["ETag"]}

        numbers = range(1, (size + step - 1) // step + 1)
        try:
            with ThreadPoolExecutor(self.settings.max_concurrency) as pool:
                parts = list(pool.map(part, numbers))
            self._call(
                what,
                lambda: self._client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                ),
            )
        except BaseException:
            # Best effort, one try: the server may be gone; the object never became visible.
            try:
                self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            except Exception as exc:  # noqa: BLE001 - the original failure is what matters
                log.warning("%s: could not abort multipart upload: %s", what, _short(exc))
            raise

    def head(self, key: str) -> ObjectInfo:
        """Size, ETag and metadata of `key`; StorageNotFound when it does not exist."""
        resp = self._call(
            f"head {self.uri(key)}", lambda: self._client.head_object(Bucket=self.bucket, Key=key)
        )
        return ObjectInfo(
            key=key,
            size=int(resp["ContentLength"]),
            etag=resp["ETag"],
            metadata={k.lower(): v for k, v in (resp.get("Metadata") or {}).items()},
            last_modified=resp.get("LastModified"),
        )

    def get_bytes(self, key: str, info: ObjectInfo | None = None) -> bytes:
        """Download `key`: one GET, or parallel ranged GETs (pinned to one ETag) if configured."""
        return self.get_hashed(key, info)[0]

    def get_hashed(self, key: str, info: ObjectInfo | None = None) -> tuple[bytes, str]:
        """Download `key` and its sha256 (hashed while the bytes arrive on a single GET)."""
        info = info or self.head(key)
        what = f"download {self.uri(key)}"
        step = self.settings.download_part_size
        if step <= 0 or info.size <= step:
            data, digest = self._call(what, lambda: self._read(key, None, info.etag, hashed=True))
            if len(data) != info.size:
                raise StorageError(f"{what}: short read ({len(data)} of {info.size} bytes)")
            return data, digest
        buf = bytearray(info.size)

        def fetch(start: int) -> None:
            end = min(start + step, info.size) - 1
            chunk, _ = self._call(
                f"{what} (bytes {start}-{end})", lambda: self._read(key, (start, end), info.etag)
            )
            if len(chunk) != end - start + 1:
                raise StorageError(f"{what}: short read at bytes {start}-{end}")
            buf[start : end + 1] = chunk

        with ThreadPoolExecutor(self.settings.max_concurrency) as pool:
            list(pool.map(fetch, range(0, info.size, step)))
        data = bytes(buf)
        return data, sha256_hex(data)

    def _read(
        self, key: str, span: tuple[int, int] | None, etag: str, hashed: bool = False
    ) -> tuple[bytes, str]:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "IfMatch": etag}
        if span is not None:
            kwargs["Range"] = f"bytes={span[0]}-{span[1]}"
        body = self._client.get_object(**kwargs)["Body"]
        try:
            if not hashed:
                return body.read(), ""
            # Hash each chunk on a worker thread while the next one arrives.
            h = OverlappedSha256()
            chunks = []
            while chunk := body.read(_READ_CHUNK):
                h.update(chunk)
                chunks.append(chunk)
            return b"".join(chunks), h.hexdigest()
        finally:
            body.close()

    def list_keys(self, prefix: str) -> list[ObjectInfo]:
        """All objects under `prefix` (paginated)."""
        out: list[ObjectInfo] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            resp = self._call(
                f"list {self.uri(prefix)}", lambda: self._client.list_objects_v2(**kwargs)
            )
            for item in resp.get("Contents", []):
                out.append(
                    ObjectInfo(
                        key=item["Key"],
                        size=int(item["Size"]),
                        etag=item.get("ETag", ""),
                        metadata={},
                        last_modified=item.get("LastModified"),
                    )
                )
            if not resp.get("IsTruncated"):
                return out
            token = resp.get("NextContinuationToken")

    def delete(self, key: str) -> None:
        """Delete `key` (no error when it is already gone)."""
        self._call(
            f"delete {self.uri(key)}",
            lambda: self._client.delete_object(Bucket=self.bucket, Key=key),
        )


class OverlappedSha256:
    """sha256 computed on one worker thread, fed immutable chunks in order.

    hashlib releases the GIL on large buffers, so hashing overlaps with whatever produces the
    chunks (a socket read, torch.save) instead of adding to it.
    """

    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="sha256")
        self._pending: list[Any] = []

    def update(self, chunk: bytes) -> None:
        """Queue `chunk` (must not change afterwards)."""
        self._pending.append(self._pool.submit(self._h.update, chunk))
        if len(self._pending) > 64:  # keep the list short; surface errors early
            for f in self._pending:
                if f.done():
                    f.result()
            self._pending = [f for f in self._pending if not f.done()]

    def hexdigest(self) -> str:
        """Wait for every queued chunk; the hex digest of all of them."""
        self._pool.shutdown(wait=True)
        for f in self._pending:
            f.result()
        return self._h.hexdigest()


def sha256_hex(data: bytes | memoryview) -> str:
    """Hex sha256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def client_from_config(cfg: DictConfig, **overrides: Any) -> S3Client:
    """An S3Client for the `storage` group of `cfg` (endpoint/credentials from config or env)."""
    settings = S3Settings.from_config(cfg.storage, **overrides)
    if settings.endpoint_url is None:
        raise StorageError(
            "no S3 endpoint: set S3_ENDPOINT_URL (or storage.endpoint_url=...), "
            "e.g. to a server started with `harness checkpoints serve`"
        )
    return S3Client(settings)
