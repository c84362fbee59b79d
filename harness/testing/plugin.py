"""Command-line options that pick where the services under test come from.

`--backend local` (default) starts embedded local processes, `--backend docker` uses containers
(skipped when no Docker engine answers), `--backend external` talks to URLs given with the
`--*-url` options, so the same tests verify a remote deployment.

Each service fixture is composed of small session fixtures (`<service>_backend`,
`<service>_url`, `<service>_cfg`, ...) that a conftest.py may override one at a time; the
options only give their defaults.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

BACKENDS = ("local", "docker", "external")
URL_OPTIONS = {
    "triton-url": "HTTP URL of an external Triton server (host:port or http://host:port)",
    "triton-grpc-url": "gRPC URL of an external Triton server (host:port)",
    "s3-url": "endpoint of an external S3/MinIO server",
    "mlflow-url": "URL of an external MLflow tracking server",
    "files-url": "base URL of an external file server serving the test pool",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "mlops-harness services")
    group.addoption(
        "--backend",
        choices=BACKENDS,
        default=os.environ.get("HARNESS_BACKEND", "local"),
        help="where services come from: local processes (default), docker, or external URLs",
    )
    for name, text in URL_OPTIONS.items():
        env = "HARNESS_" + name.upper().replace("-", "_")
        group.addoption(f"--{name}", default=os.environ.get(env), help=f"{text} (env {env})")


def backend(config: pytest.Config) -> str:
    """The backend chosen for this test session."""
    return config.getoption("--backend")


def external_url(config: pytest.Config, option: str, service: str) -> str:
    """The URL given for an external service, or skip with the reason."""
    url = config.getoption(f"--{option}")
    if not url:
        pytest.skip(f"--backend external needs --{option} for {service}")
    return url


def require_docker() -> None:
    """Skip the test when no Docker engine answers."""
    from harness.services import docker_available

    if not docker_available():
        pytest.skip("no Docker engine: the docker backend cannot run on this machine")


def require_backend(kind: str) -> None:
    """Skip when backend `kind` cannot run here (docker without an engine)."""
    if kind == "docker":
        require_docker()


@pytest.fixture(scope="session")
def backend_name(pytestconfig: pytest.Config) -> str:
    """The backend chosen with --backend / HARNESS_BACKEND."""
    return backend(pytestconfig)


def backend_fixtures(service: str, option: str, label: str) -> tuple[Any, Any]:
    """The `<service>_backend` and `<service>_url` session fixtures of one service.

    `<service>_backend` defaults to `backend_name`; `<service>_url` is --`option` when that
    backend is external (a skip naming the option when it is missing), else None. A conftest
    overrides either by defining a fixture of the same name.
    """

    def backend_fixture(backend_name: str) -> str:
        return backend_name

    def url_fixture(pytestconfig: pytest.Config, request: pytest.FixtureRequest) -> str | None:
        if request.getfixturevalue(f"{service}_backend") != "external":
            return None
        return external_url(pytestconfig, option, label)

    backend_fixture.__doc__ = f"Where {label} comes from: local, docker or external (--backend)."
    url_fixture.__doc__ = f"--{option} when {service}_backend is external, else None."
    return (
        pytest.fixture(scope="session", name=f"{service}_backend")(backend_fixture),
        pytest.fixture(scope="session", name=f"{service}_url")(url_fixture),
    )
