"""Session fixtures for Triton: the golden fixture model in a temp repository, served by the
backend chosen with --backend (local | docker | external), plus clients for both protocols.

`triton_server` only builds the server from small fixtures a conftest.py may override one at a
time: `triton_backend`, `triton_url`, `triton_grpc_url`, `triton_cfg`, `triton_repository`,
`triton_work_dir`.

The served repository is the canonical `config.pbtxt` of the classifier with the committed
fixture ONNX file (fixtures/triton/model.onnx), so golden answers do not depend on retraining.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.services.base import running
from harness.serving.golden import GOLDEN_DIR, Golden, load_golden, make_fixture_repository
from harness.testing.plugin import backend_fixtures, require_backend

__all__ = ["GOLDEN_DIR", "Golden", "load_golden", "make_fixture_repository"]


@pytest.fixture(scope="session")
def triton_cfg():
    """The composed configuration (defaults)."""
    from harness.config import compose

    return compose([])


@pytest.fixture(scope="session")
def triton_golden() -> Golden:
    """Golden images and expected logits/labels."""
    return load_golden()


@pytest.fixture(scope="session")
def triton_repository(triton_cfg, tmp_path_factory) -> Path:
    """A temporary canonical repository holding the fixture model."""
    return make_fixture_repository(triton_cfg, tmp_path_factory.mktemp("triton_repo"))


triton_backend, triton_url = backend_fixtures("triton", "triton-url", "Triton")


@pytest.fixture(scope="session")
def triton_grpc_url(pytestconfig: pytest.Config, triton_backend: str) -> str | None:
    """gRPC address of the external server (--triton-grpc-url); None unless external."""
    return pytestconfig.getoption("--triton-grpc-url") if triton_backend == "external" else None


@pytest.fixture(scope="session")
def triton_work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the local backend materializes the repository and writes its logs."""
    return tmp_path_factory.mktemp("triton")


@pytest.fixture(scope="session")
def triton_server(
    triton_cfg, triton_backend, triton_url, triton_grpc_url, triton_repository, triton_work_dir
) -> Iterator:
    """A ready TritonServer serving the fixture model, built from the fixtures above."""
    from harness.services.triton import make_triton

    require_backend(triton_backend)
    server = make_triton(
        triton_cfg,
        triton_backend,
        triton_repository,
        http_url=triton_url,
        grpc_url=triton_grpc_url,
        work_dir=triton_work_dir,
    )
    with running(server):
        if triton_backend == "external":
            _load_fixture_model_externally(triton_cfg, server)
        yield server


def _load_fixture_model_externally(cfg, server) -> None:
    """Ask an external server (explicit model control) to load the fixture model, or skip."""
    from tritonclient.utils import InferenceServerException

    from harness.paths import resolve
    from harness.serving.client import TritonClient
    from harness.serving.repository import config_to_json, read_config

    # A separate name: the remote's own model is never replaced by the test fixture.
    name = external_model_name(cfg)
    config = read_config(resolve(cfg.triton.repository) / cfg.triton.model_name)
    config.name = name
    files = {"file:1/model.onnx": (GOLDEN_DIR / "model.onnx").read_bytes()}
    with TritonClient(server.http_address, "http") as client:
        try:
            client.client.load_model(name, config=config_to_json(config), files=files)
        except InferenceServerException as exc:
            reason = external_load_refusal(str(exc))
            if reason is None:  # anything else is breakage: the tier fails, never skips
                raise
            pytest.skip(f"external Triton cannot load the fixture model ({reason}): {exc}")
    server.models = [name]


# Refusals of an external server that are its deployment choice, not a fault (Triton 2.51's
# own wording): loading needs --model-control-mode=explicit and an onnxruntime backend.
EXPECTED_LOAD_REFUSALS = {
    "explicit model load / unload is not allowed": "not in explicit model-control mode",
    "unable to find backend library for backend": "no onnxruntime backend installed",
}


def external_load_refusal(message: str) -> str | None:
    """Why an external server refused to load the fixture, when that is an expected cause."""
    return next((why for text, why in EXPECTED_LOAD_REFUSALS.items() if text in message), None)


def external_model_name(cfg) -> str:
    """Name under which the fixture model is loaded into an external server."""
    return f"{cfg.triton.model_name}-harness-golden"


@pytest.fixture(scope="session")
def triton_model(triton_backend, triton_cfg, triton_server) -> str:
    """Name of the served fixture classifier."""
    if triton_backend == "external":
        return external_model_name(triton_cfg)
    return triton_cfg.triton.model_name


@pytest.fixture(params=["http", "grpc"])
def triton_client(request, triton_server, triton_cfg):
    """A TritonClient for each protocol."""
    from harness.serving.client import TritonClient

    protocol = request.param
    client = TritonClient(
        triton_server.address(protocol),
        protocol,
        timeout_s=triton_cfg.triton.client.timeout_s,
        connect_timeout_s=triton_cfg.triton.client.connect_timeout_s,
    )
    yield client
    client.close()


@pytest.fixture(scope="session")
def triton_reloader(triton_server, triton_model):
    """A function reloading the model with a Variant applied to its served config.

    The served config is restored at the end of the session; tests that must not leak their
    variant into later tests use `triton_reload`, which restores it after each test.
    """
    from harness.perf.tune import load_variant
    from harness.serving.client import TritonClient
    from harness.serving.repository import config_from_json, config_to_json

    client = TritonClient(triton_server.grpc_url, "grpc")
    base = client.config(triton_model)

    def reload(variant=None, preferred=None):
        if variant is None:  # back to the served config
            client.load(triton_model, config_to_json(config_from_json(base)))
        else:
            load_variant(client, triton_model, variant, base, preferred)
        return client.config(triton_model)

    yield reload
    reload(None)
    client.close()


@pytest.fixture
def triton_reload(triton_reloader):
    """Like `triton_reloader`, restoring the served config after the test."""
    yield triton_reloader
    triton_reloader(None)
