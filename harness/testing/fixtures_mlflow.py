"""Session fixtures for MLflow: a tracking server from the chosen backend (local process by
default, a container with --backend docker, --mlflow-url with --backend external).

`mlflow_tracking` is built from `mlflow_backend`, `mlflow_url` and `mlflow_cfg`, each of which a
conftest.py may override."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from harness.services.base import running
from harness.testing.plugin import backend_fixtures, require_backend

mlflow_backend, mlflow_url = backend_fixtures("mlflow", "mlflow-url", "MLflow")


@pytest.fixture(scope="session")
def mlflow_cfg(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The composed config, with the local server's store in a temp folder."""
    from harness.config import compose

    return compose([f"logging.local.store_dir={tmp_path_factory.mktemp('mlflow')}"])


@pytest.fixture(scope="session")
def mlflow_tracking(mlflow_cfg: Any, mlflow_backend: str, mlflow_url: str | None) -> Iterator[str]:
    """URL of a running MLflow tracking server for the test session."""
    from harness.services.mlflow import tracking_service

    require_backend(mlflow_backend)
    with running(tracking_service(mlflow_cfg, mlflow_backend, mlflow_url)) as service:
        yield service.url
