"""MLflow service construction (no server started here; the integration tier runs them)."""

from __future__ import annotations

import pytest

from harness.config import compose
from harness.errors import HarnessError, ServiceError
from harness.services import ExternalService, LocalProcess, free_port
from harness.services.mlflow import (
    check_tracking_uri,
    configured_tracking_uri,
    local_tracking_server,
    model_server,
    tracking_service,
)


def test_local_server_is_small_and_on_its_own_store(tmp_path):
    cfg = compose([f"logging.local.store_dir={tmp_path}"])
    svc = local_tracking_server(cfg)
    assert isinstance(svc, LocalProcess)
    argv = svc.argv
    assert argv[argv.index("--workers") + 1] == "1"
    assert argv[argv.index("--backend-store-uri") + 1] == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert argv[argv.index("--artifacts-destination") + 1] == str(tmp_path / "artifacts")
    assert svc.env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert svc.url.startswith("http://127.0.0.1:")


def test_model_server_uses_local_env_manager(tmp_path):
    cfg = compose([f"logging.local.store_dir={tmp_path}"])
    svc = model_server(cfg, "runs:/abc/model", "http://127.0.0.1:1", port=12345)
    assert svc.url == "http://127.0.0.1:12345"
    assert svc.argv[svc.argv.index("--env-manager") + 1] == "local"
    assert svc.env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:1"


def test_backends_and_uri_precedence(monkeypatch):
    cfg = compose(["logging.tracking_uri=http://example.invalid:5000"])
    assert isinstance(tracking_service(cfg, "external", "http://h:1"), ExternalService)
    with pytest.raises(HarnessError, match="unknown MLflow backend"):
        tracking_service(cfg, "ftp")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert configured_tracking_uri(cfg) == "http://example.invalid:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:1")
    assert configured_tracking_uri(cfg) == "http://env:1"


def test_unreachable_tracking_server_is_one_clear_error():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ServiceError, match=f"unreachable at {url}"):
        check_tracking_uri(url, timeout=2)
    check_tracking_uri("sqlite:///x.db", timeout=2)  # not HTTP: nothing to check
