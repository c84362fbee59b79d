"""Session fixtures for the S3 service: one server per test session, chosen by --backend.

`s3_service` is started lazily (only tests that ask for it pay the start-up) and stopped at the
end of the session; it is built from `s3_backend`, `s3_url` and `s3_cfg`, each of which a
conftest.py may override. Tests isolate themselves with unique key prefixes (`s3_prefix`), so one
server and one bucket serve them all.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from harness.services.base import running
from harness.testing.plugin import backend_fixtures, require_backend

TEST_BUCKET = "harness-test"


s3_backend, s3_url = backend_fixtures("s3", "s3-url", "S3")


@pytest.fixture(scope="session")
def s3_cfg(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The composed config, with the local service's runtime files in a temp folder."""
    from harness.config import compose

    return compose([f"paths.work_dir={tmp_path_factory.mktemp('s3-work')}"])


@pytest.fixture(scope="session")
def s3_service(s3_cfg: Any, s3_backend: str, s3_url: str | None) -> Iterator[Any]:
    """A running S3 service (local moto/minio process, MinIO container, or external URL)."""
    from harness.services.s3 import make_s3_service

    require_backend(s3_backend)
    with running(make_s3_service(s3_cfg, s3_backend, s3_url)) as svc:
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
