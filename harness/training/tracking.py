"""MLflow logging for a training run: which server, params, commit id, metrics, the model."""

from __future__ import annotations

import contextlib
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from harness.config import to_flat_dict
from harness.paths import ROOT
from harness.services.base import running
from harness.services.mlflow import (
    check_tracking_uri,
    configured_tracking_uri,
    local_tracking_server,
    write_run_info,
)

log = logging.getLogger(__name__)


def git_commit() -> str:
    """The repository's HEAD commit id ('unknown' outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


@contextlib.contextmanager
def tracking_server(cfg: DictConfig) -> Iterator[str]:
    """Yield a usable tracking URI: the configured one (checked), or a local server we own."""
    uri = configured_tracking_uri(cfg)
    if uri:
        check_tracking_uri(uri, cfg.logging.connect_timeout)
        yield uri
        return
    server = local_tracking_server(cfg)
    with running(server):
        yield server.url


class RunLogger:
    """Logs one training run to MLflow; a no-op when logging.enabled is false."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.enabled = bool(cfg.logging.enabled)
        self.run_id: str | None = None
        self.tracking_uri: str | None = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> RunLogger:
        if not self.enabled:
            return self
        import mlflow

        try:
            self.tracking_uri = self._stack.enter_context(tracking_server(self.cfg))
            mlflow.set_tracking_uri(self.tracking_uri)
            mlflow.set_experiment(self.cfg.logging.experiment)
            run = self._stack.enter_context(mlflow.start_run(run_name=self.cfg.logging.run_name))
        except BaseException:
            self._stack.close()
            raise
        self.run_id = run.info.run_id
        commit = git_commit()
        mlflow.set_tags({"mlflow.source.git.commit": commit, "git_commit": commit})
        params = {k: "null" if v is None else v for k, v in to_flat_dict(self.cfg).items()}
        mlflow.log_params(params)
        log.info("MLflow run %s at %s", self.run_id, self.tracking_uri)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.__exit__(*exc)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Log one step of every metric series."""
        if self.enabled:
            import mlflow

            mlflow.log_metrics(metrics, step=step)

    def log_onnx(self, onnx_path: Path) -> str | None:
        """Log the ONNX file with mlflow's onnx flavor; return the model URI."""
        if not (self.enabled and self.cfg.logging.log_model):
            return None
        import mlflow
        import mlflow.onnx
        import onnx

        info = mlflow.onnx.log_model(
            onnx.load(str(onnx_path)),
            name="model",
            onnx_execution_providers=["CPUExecutionProvider"],
        )
        return info.model_uri

    def write_run_info(self, model_uri: str | None, extra: dict[str, Any]) -> Path | None:
        """Record run id, tracking URI and model URI for `harness run-server`."""
        if not self.enabled:
            return None
        info = {
            "run_id": self.run_id,
            "tracking_uri": self.tracking_uri,
            "model_uri": model_uri,
            "runs_uri": f"runs:/{self.run_id}/model",
            **extra,
        }
        return write_run_info(self.cfg, info)
