"""Session fixtures for the S3 service: one server per test session, chosen by --backend.

`s3_service` is started lazily (only tests that ask for it pay the start-up) and stopped at the
end of the session. Tests isolate themselves with unique key prefixes (`s3_prefix`), so one
server and one bucket serve them all.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from harness.services.base import running
from harness.testing.plugin import backend, external_url, require_docker

TEST_BUCKET = "harness-test"


@pytest.fixture(scope="session")
def s3_service(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """A running S3 service (local moto/minio process, MinIO container, or external URL)."""
    from harness.config import compose
    from harness.services.s3 import make_s3_service

    chosen = backend(pytestconfig)
    if chosen == "docker":
        require_docker()
    url = external_url(pytestconfig, "s3-url", "S3") if chosen == "external" else None
    cfg = compose([f"paths.work_dir={tmp_path_factory.mktemp('s3-work')}"])
    svc = make_s3_service(cfg, chosen, url)
    with running(svc):
        yield svc


@pytest.fixture(scope="session")
def s3_bucket(s3_service: Any) -> str:
    """The test bucket (created once, idempotently)."""
    s3_service.client(TEST_BUCKET)
    return TEST_BUCKET


@pytest.fixture
def s3_prefix() -> str:
    """A key prefix unique to this test."""
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def s3_env(s3_service: Any, s3_bucket: str) -> dict[str, str]:
    """Environment for a child `harness` process to reach the test server (add storage.bucket)."""
    return s3_service.env()


@pytest.fixture
def s3_client(s3_service: Any, s3_bucket: str) -> Any:
    """A retrying S3Client on the test bucket."""
    return s3_service.client(s3_bucket, ensure_bucket=False)
