"""Conformance checks of an S3 endpoint: integrity, a cut checkpoint upload, refusals, MB/s.

`harness verify s3 --endpoint URL --bucket NAME` runs this module; so does
`pytest --pyargs harness.conformance --verify-s3-endpoint URL --verify-s3-bucket NAME`.
Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. Every object is written under
a prefix unique to the run and deleted at the end. The logic lives in harness.verify.s3.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from harness.conformance.plugin import option, require

MB = 1024 * 1024


def _check(fn: Any, *args: Any) -> Any:
    """Run one harness.verify.s3 function; its S3CheckFailed becomes a one-line failure."""
    from harness.verify.s3 import S3CheckFailed

    try:
        return fn(*args)
    except S3CheckFailed as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="module")
def s3_configs() -> tuple[Any, Any]:
    """(verify.s3, storage) from configs/."""
    from harness.verify.s3 import configs

    return configs()


@pytest.fixture(scope="module")
def s3_target(pytestconfig: pytest.Config, s3_configs: tuple[Any, Any]) -> Any:
    """The endpoint, bucket, this run's prefix and the credentials from the environment."""
    from harness.verify.s3 import make_target

    endpoint = require(pytestconfig, "verify-s3-endpoint", "S3 endpoint")
    bucket = require(pytestconfig, "verify-s3-bucket", "S3 bucket")
    target = make_target(
        endpoint, bucket, option(pytestconfig, "verify-s3-prefix"), s3_configs[0], os.environ
    )
    if target.credentials is None:
        pytest.fail(
            f"no credentials for {endpoint}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            pytrace=False,
        )
    return target


@pytest.fixture(scope="module")
def s3_client(s3_target: Any, s3_configs: tuple[Any, Any]) -> Iterator[Any]:
    """A client on the bucket; everything under the run's prefix is removed afterwards."""
    from harness.storage.s3 import S3Client
    from harness.verify.s3 import clean_up, settings

    client = S3Client(settings(s3_target, *s3_configs))
    yield client
    clean_up(s3_target, client)


@pytest.fixture(scope="module")
def probe_key(s3_target: Any, s3_client: Any) -> str:
    """A small object that exists: what the wrong-credential and anonymous reads ask for."""
    from harness.errors import HarnessError
    from harness.verify.s3 import payload

    key = f"{s3_target.prefix}/probe"
    try:
        s3_client.put_bytes(key, payload(1024, 0), {})
    except HarnessError as exc:  # the refusal checks need an object that surely exists
        pytest.fail(f"writing the probe object {s3_target.where(key)}: {exc}", pytrace=False)
    return key


def test_round_trip_single_put(s3_target: Any, s3_client: Any, s3_configs: Any) -> None:
    """An object below the multipart threshold comes back with the same sha256 and size."""
    from harness.verify.s3 import payload, round_trip

    vcfg = s3_configs[0]
    data = payload(int(float(vcfg.small_object_mb) * MB), int(vcfg.seed))
    _check(round_trip, s3_target, s3_client, f"{s3_target.prefix}/single-put.bin", data)


def test_round_trip_multipart(s3_target: Any, s3_client: Any, s3_configs: Any) -> None:
    """An object above the threshold goes up in parts and comes back with the same sha256."""
    from harness.verify.s3 import payload, round_trip

    vcfg = s3_configs[0]
    data = payload(int(float(vcfg.large_object_mb) * MB), int(vcfg.seed) + 1)
    _check(round_trip, s3_target, s3_client, f"{s3_target.prefix}/multipart.bin", data)


def test_checkpoint_resume_after_cut(s3_target: Any, s3_client: Any, s3_configs: Any) -> None:
    """A checkpoint upload cut mid-way leaves `latest` on the previous one; resume is bit-exact."""
    from harness.verify.s3 import checkpoint_cut

    _check(checkpoint_cut, s3_target, *s3_configs)


def test_wrong_credentials_refused(s3_target: Any, probe_key: str, s3_configs: Any) -> None:
    """A wrong secret and an unknown access key id are refused."""
    from harness.verify.s3 import wrong_credentials

    _check(wrong_credentials, s3_target, probe_key, *s3_configs)


def test_anonymous_read_refused(s3_target: Any, probe_key: str, s3_configs: Any) -> None:
    """Unsigned reads and listings are refused: a public bucket is a finding, not a pass."""
    from harness.verify.s3 import anonymous_access

    _check(anonymous_access, s3_target, probe_key, *s3_configs)


def test_throughput(s3_target: Any, s3_client: Any, s3_configs: Any, record_metric: Any) -> None:
    """Put and get MB/s of one object (sha256 checked), recorded in the report."""
    from harness.verify.s3 import throughput

    numbers = _check(
        throughput, s3_target, s3_client, f"{s3_target.prefix}/throughput.bin", s3_configs[0]
    )
    for name, value in numbers.items():
        record_metric(f"s3 {name}", value)
