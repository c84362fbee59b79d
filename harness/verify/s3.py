"""The S3 checks of `harness verify s3`, as plain functions over one endpoint and bucket.

harness/conformance/test_s3.py wraps each in a pytest check; every function raises
`S3CheckFailed` with one line naming the object and the endpoint, or returns measurements.
Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and never appear in a message.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import math
import random
import secrets
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from omegaconf import DictConfig

from harness.errors import HarnessError
from harness.storage.s3 import (
    MB,
    SHA256_META,
    Credentials,
    RetryPolicy,
    S3Client,
    S3Settings,
    StorageAuthError,
    StorageError,
)

log = logging.getLogger(__name__)

# Answers that mean "refused": S3 says 403 AccessDenied; some gateways 401.
_REFUSED_CODES = {"AccessDenied", "403", "401", "Unauthorized", "AllAccessDisabled"}


class S3CheckFailed(HarnessError):
    """A check found a problem; the message is one line naming the object and the endpoint."""


@dataclass(frozen=True)
class Target:
    """One endpoint and bucket to verify, the run's own key prefix and the credentials."""

    endpoint: str
    bucket: str
    prefix: str
    credentials: Credentials | None = field(default=None, repr=False)

    def where(self, key: str) -> str:
        """`s3://bucket/key at http://endpoint` (what every failure names)."""
        return f"s3://{self.bucket}/{key} at {self.endpoint}"


def configs() -> tuple[DictConfig, DictConfig]:
    """(verify.s3, storage) from configs/: sizes of the checks, client timeouts and retries."""
    from harness.config import compose

    cfg = compose()
    return cfg.verify.s3, cfg.storage


def make_target(
    endpoint: str, bucket: str, prefix: str | None, vcfg: DictConfig, env: Mapping[str, str] | None
) -> Target:
    """The target with a unique prefix for this run (two runs never share objects)."""
    base = (prefix or str(vcfg.prefix)).strip("/")
    run = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
    return Target(endpoint.rstrip("/"), bucket, f"{base}/{run}", Credentials.from_env(env))


def settings(target: Target, vcfg: DictConfig, storage: DictConfig, **changes: Any) -> S3Settings:
    """Client settings: the project's storage defaults, the check sizes from verify.s3."""
    base = S3Settings.from_config(
        storage, endpoint_url=target.endpoint, credentials=target.credentials
    )
    timeout = float(vcfg.timeout_s)
    s = replace(
        base,
        bucket=target.bucket,
        connect_timeout=timeout,
        read_timeout=timeout,
        multipart_threshold=int(float(vcfg.multipart_threshold_mb) * MB),
        part_size=int(float(vcfg.part_size_mb) * MB),
    )
    return replace(s, **changes)


def _named(target: Target, exc: Exception) -> str:
    """The storage error's one line, with the endpoint added when it does not name it."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if target.endpoint in text else f"{text} (endpoint {target.endpoint})"


@contextmanager
def _failing(target: Target, what: str) -> Iterator[None]:
    """Turn a storage error inside the block into S3CheckFailed naming `what` and the endpoint."""
    try:
        yield
    except S3CheckFailed:
        raise
    except HarnessError as exc:
        raise S3CheckFailed(f"{what}: {_named(target, exc)}") from exc


def payload(size: int, seed: int) -> bytes:
    """`size` pseudo-random bytes (incompressible, reproducible from the seed)."""
    return random.Random(seed).randbytes(size)


def preflight(endpoint: str, bucket: str, vcfg: DictConfig, storage: DictConfig) -> None:
    """Credentials set and the bucket there, or one line (the CLI exits non-zero)."""
    target = make_target(endpoint, bucket, None, vcfg, None)
    if target.credentials is None:
        raise HarnessError(
            "verify s3: no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    client = S3Client(
        settings(target, vcfg, storage, retry=RetryPolicy(max_attempts=int(vcfg.cut_attempts)))
    )
    try:
        client.raw.head_bucket(Bucket=bucket)
    except Exception as exc:  # noqa: BLE001 - classified below, one line each
        from botocore.exceptions import ClientError

        code = ""
        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code") or exc.response["ResponseMetadata"].get("HTTPStatusCode"))
        if code in {"404", "NoSuchBucket", "NotFound"}:
            raise HarnessError(
                f"verify s3: bucket '{bucket}' does not exist at {endpoint}"
            ) from exc
        if code in {"403", "401", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"}:
            raise HarnessError(
                f"verify s3: {endpoint} refused the credentials for bucket '{bucket}' (HTTP {code})"
                ": check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
            ) from exc
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HarnessError(f"verify s3: bucket '{bucket}' at {endpoint}: {first}") from exc


# -- checks -----------------------------------------------------------------------------------
def round_trip(target: Target, client: S3Client, key: str, data: bytes) -> dict[str, Any]:
    """Upload `data`, download it, compare sha256 and size; multipart ETags must show the parts."""
    want = hashlib.sha256(data).hexdigest()
    where = target.where(key)
    with _failing(target, f"round trip of {where}"):
        client.put_bytes(key, data, {SHA256_META: want})
        info = client.head(key)
        got, digest = client.get_hashed(key, info)
    if info.size != len(data):
        raise S3CheckFailed(f"{where}: stored {info.size} bytes, uploaded {len(data)}")
    if digest != want:
        raise S3CheckFailed(
            f"{where}: sha256 of the downloaded bytes {digest[:12]}… != uploaded {want[:12]}… "
            f"({len(got)} bytes)"
        )
    if info.metadata.get(SHA256_META) != want:
        raise S3CheckFailed(f"{where}: the sha256 metadata came back changed or missing")
    multipart = len(data) >= client.settings.multipart_threshold
    parts = math.ceil(len(data) / client.settings.part_size) if multipart else 0
    etag = info.etag.strip('"')
    if multipart and not etag.endswith(f"-{parts}"):
        raise S3CheckFailed(
            f"{where}: ETag {etag!r} of a {parts}-part upload does not end in -{parts}"
        )
    return {"bytes": len(data), "parts": parts}


def checkpoint_state(payload_bytes: int, epoch: int, seed: int) -> dict[str, Any]:
    """A training-shaped state (tensors, optimizer, RNG) of about `payload_bytes`."""
    import torch

    from harness.storage.checkpoint_format import FORMAT_VERSION

    gen = torch.Generator().manual_seed(seed)
    floats = max(1, payload_bytes // 4)
    weight = torch.randn(floats, generator=gen)
    return {
        "format_version": FORMAT_VERSION,
        "model": {"weight": weight, "bias": torch.randn(16, generator=gen)},
        "optimizer": {"state": {0: {"step": torch.tensor(float(epoch))}}, "param_groups": []},
        "scheduler": {"last_epoch": epoch},
        "config": {"verify": "s3"},
        "epoch": epoch,
        "global_step": epoch * 10,
        "rng": {"torch": gen.get_state()},
    }


def first_difference(a: Any, b: Any, path: str = "state") -> str | None:
    """None when `a` and `b` are bit-identical (tensors: dtype, shape, bytes), else the path."""
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        same = (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and torch.equal(a, b)
        )
        return None if same else path
    if isinstance(a, Mapping):
        if not isinstance(b, Mapping) or set(a) != set(b):
            return path
        for k in a:
            diff = first_difference(a[k], b[k], f"{path}.{k}")
            if diff:
                return diff
        return None
    if isinstance(a, (list, tuple)):
        if not isinstance(b, (list, tuple)) or len(a) != len(b):
            return path
        for i, (x, y) in enumerate(zip(a, b)):
            diff = first_difference(x, y, f"{path}[{i}]")
            if diff:
                return diff
        return None
    return None if a == b else path


def checkpoint_cut(target: Target, vcfg: DictConfig, storage: DictConfig) -> dict[str, Any]:
    """Save a checkpoint; cut the next upload half-way; `latest` unchanged; resume bit-exact."""
    from harness.storage.checkpoints import CheckpointError, S3CheckpointStore
    from harness.storage.faultproxy import FaultProxy
    from harness.urls import host_port

    if urlsplit(target.endpoint).scheme == "https":
        raise S3CheckFailed(
            f"checkpoint cut at {target.endpoint}: needs an http endpoint (the TCP fault proxy "
            "in front of a TLS endpoint breaks certificate verification)"
        )
    host, port = host_port(target.endpoint)
    seed = int(vcfg.seed)
    with FaultProxy(host, port) as proxy:
        proxied = replace(target, endpoint=proxy.url)
        client = S3Client(
            settings(
                proxied,
                vcfg,
                storage,
                retry=RetryPolicy(
                    max_attempts=int(vcfg.cut_attempts),
                    base_delay=float(vcfg.cut_backoff_s),
                    max_delay=float(vcfg.cut_backoff_s),
                ),
            )
        )
        store = S3CheckpointStore(client, f"{target.prefix}/checkpoints", keep_last=0)
        first_state = checkpoint_state(int(float(vcfg.small_object_mb) * MB), 1, seed)
        with _failing(target, "checkpoint cut: saving the first checkpoint"):
            first = store.save(first_state, epoch=1)
        second_state = checkpoint_state(int(float(vcfg.checkpoint_mb) * MB), 2, seed + 1)
        # Counted bytes, not a timer: the cut lands inside the second object's body every time.
        cut_at = int(float(vcfg.checkpoint_mb) * MB * float(vcfg.cut_fraction))
        proxy.cut_after(cut_at)
        try:
            second = store.save(second_state, epoch=2)
        except CheckpointError:
            pass
        else:
            raise S3CheckFailed(
                f"checkpoint cut: {target.where(store.object_key(second))}: the upload was not cut "
                f"after {cut_at} bytes (the proxy forwarded {proxy.forwarded_up})"
            )
        finally:
            proxy.restore()
    # After the cut, read through the endpoint itself: the server is reachable again.
    client = S3Client(settings(target, vcfg, storage))
    store = S3CheckpointStore(client, f"{target.prefix}/checkpoints", keep_last=0)
    latest_where = target.where(store.latest_key)
    with _failing(target, f"checkpoint cut: reading {latest_where}"):
        latest, names = store.latest(), store.list()
    if latest != first:
        raise S3CheckFailed(
            f"checkpoint cut: {latest_where} names {latest!r} after a cut upload, not the "
            f"previous checkpoint {first!r}"
        )
    if names != [first]:
        extra = ", ".join(n for n in names if n != first)
        raise S3CheckFailed(
            f"checkpoint cut: a half-written checkpoint became visible: "
            f"{target.where(store.object_key(extra))}"
        )
    obj = target.where(store.object_key(first))
    with _failing(target, f"checkpoint cut: resuming from {obj}"):
        state = store.load()
    diff = first_difference(first_state, state)
    if diff:
        raise S3CheckFailed(f"checkpoint cut: resumed {obj} differs from what was saved at {diff}")
    return {"cut_after_bytes": cut_at}


def wrong_credentials(target: Target, key: str, vcfg: DictConfig, storage: DictConfig) -> None:
    """A wrong secret and an unknown key id must both be refused reading an existing object."""
    if target.credentials is None:
        raise S3CheckFailed(f"wrong credentials at {target.endpoint}: no credentials to alter")
    real = target.credentials.access_key_id
    wrong = {
        "a wrong secret key": Credentials(real, secrets.token_urlsafe(30)),
        "an unknown access key id": Credentials(
            "AKIA" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30)
        ),
    }
    once = RetryPolicy(max_attempts=1)
    for what, creds in wrong.items():
        client = S3Client(settings(replace(target, credentials=creds), vcfg, storage, retry=once))
        try:
            client.get_bytes(key)
        except StorageAuthError:
            continue
        except StorageError as exc:
            raise S3CheckFailed(
                f"GET {target.where(key)} with {what} was not refused as unauthenticated: "
                f"{_named(target, exc)}"
            ) from exc
        raise S3CheckFailed(f"GET {target.where(key)} with {what} succeeded: signatures unchecked")


def _unsigned_client(target: Target, vcfg: DictConfig, storage: DictConfig) -> Any:
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    timeout = float(vcfg.timeout_s)
    return boto3.session.Session().client(
        "s3",
        endpoint_url=target.endpoint,
        region_name=str(storage.region),
        config=Config(
            signature_version=UNSIGNED,
            connect_timeout=timeout,
            read_timeout=timeout,
            retries={"total_max_attempts": 1, "mode": "standard"},
            s3={"addressing_style": str(storage.addressing_style)},
        ),
    )


def anonymous_access(target: Target, key: str, vcfg: DictConfig, storage: DictConfig) -> None:
    """Unsigned GET of an existing object and unsigned listing of the bucket must be refused."""
    from botocore.exceptions import BotoCoreError, ClientError

    anon = _unsigned_client(target, vcfg, storage)
    bucket = f"s3://{target.bucket} at {target.endpoint}"
    probes = {
        f"anonymous GET of {target.where(key)}": lambda: anon.get_object(
            Bucket=target.bucket, Key=key
        )["Body"].read(),
        f"anonymous listing of {bucket}": lambda: anon.list_objects_v2(
            Bucket=target.bucket, Prefix=target.prefix
        ),
    }
    findings = []
    for what, probe in probes.items():
        try:
            got = probe()
        except ClientError as exc:
            err = exc.response.get("Error", {})
            code = str(err.get("Code") or exc.response["ResponseMetadata"].get("HTTPStatusCode"))
            if code not in _REFUSED_CODES:
                findings.append(f"{what} was not refused (answer {code})")
            continue
        except BotoCoreError as exc:
            findings.append(f"{what} got no answer ({type(exc).__name__})")
            continue
        shown = f"{len(got)} bytes" if isinstance(got, bytes) else "a listing"
        findings.append(f"{what} returned {shown}: the bucket is readable without credentials")
    if findings:
        raise S3CheckFailed("; ".join(findings))


def throughput(target: Target, client: S3Client, key: str, vcfg: DictConfig) -> dict[str, float]:
    """MB/s of one put and one get of verify.s3.throughput_mb (sha256 checked), and the times."""
    data = payload(int(float(vcfg.throughput_mb) * MB), int(vcfg.seed) + 2)
    want = hashlib.sha256(data).hexdigest()
    where = target.where(key)
    with _failing(target, f"throughput {where}"):
        t0 = time.perf_counter()
        client.put_bytes(key, data, {SHA256_META: want})
        put_s = time.perf_counter() - t0
        info = client.head(key)
        t0 = time.perf_counter()
        got, digest = client.get_hashed(key, info)
        get_s = time.perf_counter() - t0
    if digest != want:
        raise S3CheckFailed(
            f"throughput {where}: sha256 of the downloaded bytes {digest[:12]}… != uploaded "
            f"{want[:12]}… ({len(got)} bytes)"
        )
    mb = len(data) / MB
    return {
        "put MB/s": round(mb / put_s, 1),
        "get MB/s": round(mb / get_s, 1),
        "put s": round(put_s, 3),
        "get s": round(get_s, 3),
        "MiB moved each way": round(mb, 1),
    }


def clean_up(target: Target, client: S3Client) -> None:
    """Delete every object under the run's prefix and abort its unfinished multipart uploads."""
    try:
        for obj in client.list_keys(target.prefix + "/"):
            client.delete(obj.key)
        uploads = client.raw.list_multipart_uploads(
            Bucket=target.bucket, Prefix=target.prefix + "/"
        )
        for up in uploads.get("Uploads", []):
            client.raw.abort_multipart_upload(
                Bucket=target.bucket, Key=up["Key"], UploadId=up["UploadId"]
            )
    except Exception as exc:  # noqa: BLE001 - housekeeping must not hide the checks' outcome
        log.warning("could not clean up s3://%s/%s/: %s", target.bucket, target.prefix, exc)
