"""The service fixtures of harness.testing are built from small fixtures a conftest overrides.

Each case runs pytest on a throw-away project (pytester) whose conftest loads the plugin: an
override of one small fixture changes what the service fixture does, and `--backend external`
without the service's URL skips with that reason. Nothing listens on the "dead" ports, so the
service fixtures fail on them (after their own readiness wait) instead of starting anything.
"""

from __future__ import annotations

import os

import pytest

from harness.services.base import docker_available, free_port

pytest_plugins = ["pytester"]

SERVICES = ("mlflow", "triton", "s3", "files")
PLUGINS = "pytest_plugins = %r\n" % [
    "harness.testing.plugin",
    *(f"harness.testing.fixtures_{name}" for name in SERVICES),
]

# One test per service fixture: each only asks for it.
SERVICE_TESTS = """
def test_triton(triton_server):
    pass

def test_s3(s3_service):
    pass

def test_mlflow(mlflow_tracking):
    pass

def test_files(file_server):
    pass
"""


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester project loading the plugin, with no backend or URL from the environment."""
    for name in list(os.environ):
        if name == "HARNESS_BACKEND" or (name.startswith("HARNESS_") and name.endswith("_URL")):
            monkeypatch.delenv(name)
    return pytester


def test_overriding_triton_backend_and_url_points_triton_server_elsewhere(project) -> None:
    port = free_port()  # nothing listens here
    project.makeconftest(PLUGINS + f"""
import pytest

@pytest.fixture(scope="session")
def triton_backend():
    return "external"

@pytest.fixture(scope="session")
def triton_url():
    return "127.0.0.1:{port}"

@pytest.fixture(scope="session")
def triton_cfg():  # the config is a knob too: wait 1 s, not the default, for the dead port
    from harness.config import compose

    return compose(["triton.external.ready_timeout_s=1"])
""")
    project.makepyfile("def test_triton(triton_server):\n    pass\n")
    result = project.runpytest("-p", "no:cacheprovider")  # --backend stays local
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [f"*external Triton at http://127.0.0.1:{port} is not ready (/v2/health/ready) after 1s*"]
    )


def test_overriding_s3_url_is_the_endpoint_s3_service_uses(project) -> None:
    port = free_port()
    project.makeconftest(PLUGINS + f"""
import pytest

@pytest.fixture(scope="session")
def s3_url():
    return "http://127.0.0.1:{port}"

@pytest.fixture(scope="session")
def s3_cfg():
    from harness.config import compose

    return compose(["storage.external.ready_timeout_s=1"])
""")
    project.makepyfile("def test_s3(s3_service):\n    pass\n")
    result = project.runpytest("-p", "no:cacheprovider", "--backend", "external")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*s3 (external): no answer at http://127.0.0.1:{port} after 1s*"])


def test_external_backend_without_a_url_skips_with_the_reason(project) -> None:
    project.makeconftest(PLUGINS)
    project.makepyfile(SERVICE_TESTS)
    result = project.runpytest("-p", "no:cacheprovider", "-rs", "--backend", "external")
    result.assert_outcomes(skipped=4)
    result.stdout.fnmatch_lines_random(
        [
            "*--backend external needs --triton-url for Triton*",
            "*--backend external needs --s3-url for S3*",
            "*--backend external needs --mlflow-url for MLflow*",
            "*--backend external needs --files-url for the file server*",
        ]
    )


def test_docker_backend_without_an_engine_skips_with_the_reason(project) -> None:
    if docker_available():
        pytest.skip("a Docker engine answers here: the docker backend would start containers")
    project.makeconftest(PLUGINS)
    project.makepyfile(SERVICE_TESTS)
    result = project.runpytest("-p", "no:cacheprovider", "-rs", "--backend", "docker")
    result.assert_outcomes(skipped=4)
    result.stdout.fnmatch_lines(["*4*no Docker engine: the docker backend cannot run*"])
