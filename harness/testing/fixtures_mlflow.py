"""Session fixtures for MLflow: a tracking server from the chosen backend (local process by
default, a container with --backend docker, --mlflow-url with --backend external)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.services.base import running
from harness.testing.plugin import backend, external_url, require_docker


@pytest.fixture(scope="session")
def mlflow_tracking(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """URL of a running MLflow tracking server for the test session."""
    from harness.config import compose
    from harness.services.mlflow import tracking_service

    kind = backend(pytestconfig)
    store = tmp_path_factory.mktemp("mlflow")
    cfg = compose([f"logging.local.store_dir={store}"])
    url = None
    if kind == "external":
        url = external_url(pytestconfig, "mlflow-url", "MLflow")
    elif kind == "docker":
        require_docker()
    service = tracking_service(cfg, kind, url)
    with running(service):
        yield service.url
