"""MLflow services: the tracking server (local process, Docker, external URL) and the model
server (`mlflow models serve`) for a logged model. Same start/ready/url/stop shape as the rest."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from harness.errors import HarnessError, ServiceError
from harness.io import atomic_open
from harness.paths import resolve
from harness.services.base import (
    ContainerService,
    ExternalService,
    LocalProcess,
    Service,
    free_port,
    http_ok,
)
from harness.services.docker import ContainerSpec, container_spec


def mlflow_executable() -> str:
    """The `mlflow` CLI next to this interpreter (the venv), else the one on PATH."""
    here = Path(sys.executable).parent / "mlflow"
    found = str(here) if here.exists() else shutil.which("mlflow")
    if not found:
        raise ServiceError("mlflow CLI not found: install the project (pip install -e .)")
    return found


def _quiet_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    # One worker and no job runner: 2 processes and ~0.5 GB instead of ~14 and ~3 GB.
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    env.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    env.pop("MLFLOW_TRACKING_URI", None)
    # `mlflow models serve` runs `uvicorn` through bash: the venv's bin must be on PATH.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(extra or {})
    return env


def local_tracking_server(cfg: DictConfig, port: int | None = None) -> LocalProcess:
    """`mlflow server` with a sqlite store and proxied artifacts under logging.local.store_dir."""
    lc = cfg.logging.local
    store = resolve(lc.store_dir)
    store.mkdir(parents=True, exist_ok=True)
    port = port or free_port(lc.host)
    url = f"http://{lc.host}:{port}"
    argv = [
        mlflow_executable(),
        "server",
        "--host",
        lc.host,
        "--port",
        str(port),
        "--workers",
        str(lc.workers),
        "--backend-store-uri",
        f"sqlite:///{store / 'mlflow.db'}",
        "--artifacts-destination",
        str(store / "artifacts"),
    ]
    return LocalProcess(
        "mlflow-tracking",
        argv,
        url=url,
        ready_check=lambda: http_ok(url + "/health"),
        log_path=store / f"server-{port}.log",
        env=_quiet_env(),
        cwd=str(store),
        startup_timeout=lc.startup_timeout,
    )


class DockerTrackingServer(ContainerService):
    """docker-compose.yml's `mlflow` service via testcontainers; needs a Docker engine."""

    name = "mlflow-tracking-docker"
    compose_service = "mlflow"

    def __init__(self, cfg: DictConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.port = int(cfg.stack.ports.mlflow.http.container)
        self.startup_timeout = float(cfg.logging.local.startup_timeout)

    def spec(self) -> ContainerSpec:
        """Compose's `mlflow`: image, one-worker command, store in a per-container tmpfs."""
        return container_spec(
            self.compose_service, resolve(self.cfg.stack.compose_file)
        ).require_ports(self.port)

    def healthy(self, url: str) -> bool:
        """True when /health answers."""
        return http_ok(url + "/health")


def tracking_service(cfg: DictConfig, backend: str = "local", url: str | None = None) -> Service:
    """The tracking server for `backend`: local process, docker container or external URL."""
    if backend == "local":
        return local_tracking_server(cfg)
    if backend == "docker":
        return DockerTrackingServer(cfg)
    if backend == "external":
        if not url:
            raise HarnessError("external MLflow backend needs a URL (logging.tracking_uri)")
        return ExternalService("mlflow-tracking", url, health_path="/health")
    raise HarnessError(f"unknown MLflow backend '{backend}' (local, docker, external)")


def configured_tracking_uri(cfg: DictConfig) -> str:
    """MLFLOW_TRACKING_URI if set, else logging.tracking_uri ('' = start a local server)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or str(cfg.logging.tracking_uri or "")


def check_tracking_uri(uri: str, timeout: float) -> None:
    """Fail in one line when an HTTP tracking server does not answer (MLflow would retry long)."""
    if uri.startswith(("http://", "https://")) and not http_ok(
        uri.rstrip("/") + "/health", timeout=timeout
    ):
        raise ServiceError(f"MLflow tracking server unreachable at {uri}")


def model_server(
    cfg: DictConfig, model_uri: str, tracking_uri: str, port: int | None = None
) -> LocalProcess:
    """`mlflow models serve -m MODEL --env-manager local` as a managed process."""
    sc = cfg.serve
    port = port or sc.port or free_port(sc.host)
    url = f"http://{sc.host}:{port}"
    log_dir = resolve(cfg.logging.local.store_dir)
    argv = [
        mlflow_executable(),
        "models",
        "serve",
        "-m",
        model_uri,
        "--env-manager",
        "local",
        "-h",
        sc.host,
        "-p",
        str(port),
        "-w",
        str(sc.workers),
    ]
    return LocalProcess(
        "mlflow-model-server",
        argv,
        url=url,
        ready_check=lambda: http_ok(url + "/ping"),
        log_path=log_dir / f"model-server-{port}.log",
        env=_quiet_env({"MLFLOW_TRACKING_URI": tracking_uri}),
        startup_timeout=sc.startup_timeout,
    )


class ServedModel:
    """A running `mlflow models serve` and the model it serves."""

    def __init__(self, server: LocalProcess, model_uri: str) -> None:
        self.server = server
        self.model_uri = model_uri

    @property
    def url(self) -> str:
        """Base URL; POST to /invocations."""
        return self.server.url

    def running(self) -> bool:
        """True while the model server process is alive."""
        return self.server.running()


def write_run_info(cfg: DictConfig, info: dict[str, Any]) -> Path:
    """Record a training run's ids and URIs in ${logging.run_info_file} for `harness run-server`."""
    path = resolve(cfg.logging.run_info_file)
    with atomic_open(path) as fh:
        json.dump(info, fh, indent=2)
    return path


def read_run_info(cfg: DictConfig) -> dict[str, Any]:
    """The run info the last `harness train` wrote; HarnessError when there is none."""
    path = resolve(cfg.logging.run_info_file)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise HarnessError(
            f"no logged model: {path} not found (run `harness train` first)"
        ) from exc
    except (OSError, ValueError) as exc:
        raise HarnessError(f"unreadable MLflow run info {path}: {exc}") from exc


@contextlib.contextmanager
def serve_logged_model(
    cfg: DictConfig, model_uri: str | None = None, port: int | None = None
) -> Iterator[ServedModel]:
    """Serve a logged model (default: the last train's) until the block ends.

    With no tracking URI configured, a local tracking server on the same store runs only while
    the model server downloads the model; the model server then runs on its own.
    """
    if model_uri is None:
        model_uri = cfg.serve.model_uri or read_run_info(cfg).get("model_uri")
        if not model_uri:
            raise HarnessError("the last training run logged no model (logging.log_model=false)")
    uri = configured_tracking_uri(cfg)
    tracking: LocalProcess | None = None
    if uri:
        check_tracking_uri(uri, cfg.logging.connect_timeout)
    else:
        tracking = local_tracking_server(cfg)
        tracking.start()
        uri = tracking.url
    server = model_server(cfg, model_uri, uri, port=port)
    try:
        server.start()
        if tracking is not None:
            tracking.stop()
        yield ServedModel(server, model_uri)
    finally:
        server.stop()
        if tracking is not None:
            tracking.stop()
