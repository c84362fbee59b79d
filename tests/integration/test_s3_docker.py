"""The docker backend: MinIO (pinned image) via testcontainers; skipped without a Docker engine."""

from __future__ import annotations

from dataclasses import replace

import pytest

from harness.config import compose
from harness.services.base import running
from harness.services.s3 import DockerS3Service
from harness.storage.s3 import Credentials, S3Client, StorageAuthError
from harness.testing.plugin import require_docker

pytestmark = [pytest.mark.integration, pytest.mark.docker]


def test_minio_container_bucket_and_auth():
    require_docker()
    svc = DockerS3Service(compose([]).storage)
    with running(svc):
        client = svc.client("harness-docker")
        client.ensure_bucket()  # idempotent
        client.put_bytes("k", b"payload", {"sha256": "x"})
        assert client.get_bytes("k") == b"payload"
        bad = replace(svc.settings("harness-docker"), credentials=Credentials("nobody", "wrong"))
        with pytest.raises(StorageAuthError, match="authentication failed"):
            S3Client(bad).head("k")
