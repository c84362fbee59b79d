"""The pytest plugin (`pytest11` entry point `harness`): options of the conformance checks.

Every option is namespaced `--verify-*` so it never collides with another plugin's, and each has
an environment variable (`HARNESS_VERIFY_*`). Loading this module imports only pytest and the
standard library: torch, tritonclient and boto3 are imported by the checks that use them.
A check module whose target is not given skips as a whole with the option it needs.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

# option -> help; the environment variable is HARNESS_ + the option in upper snake case.
OPTIONS: dict[str, str] = {
    # inference (any Open Inference Protocol server)
    "verify-url": "inference server HTTP URL (http://host:port or host:port)",
    "verify-grpc-url": "the same server's gRPC address (host:port); gRPC checks skip without it",
    "verify-model": "name of the served model",
    "verify-onnx": "reference ONNX file (oracle: onnxruntime in-process)",
    "verify-golden": "reference golden .npz (inputs/<name>, outputs/<name> arrays)",
    "verify-protocol": "protocol of the main checks: http (default) or grpc",
    "verify-config": "the model's config.pbtxt: max_batch_size, batching, instance count",
    "verify-concurrency": "requests in flight during the load check (default: configs verify)",
    "verify-duration-s": "seconds of load in the load check (default: configs verify)",
    "verify-p99-ms": "latency budget: p99 at --verify-concurrency, in ms",
    "verify-min-throughput": "throughput budget at --verify-concurrency, in inferences/s",
    "verify-atol": "absolute tolerance for outputs (default: derived from the datatype)",
    "verify-rtol": "relative tolerance for outputs (default: derived from the datatype)",
    "verify-targets": "YAML file of targets (one entry per model): verifies a fleet in one run",
    # text embeddings
    "verify-embeddings-url": "embedding server HTTP URL (Open Inference Protocol)",
    "verify-embeddings-model": "name of the served text -> embedding model",
    "verify-embeddings-precision": "fp32 | fp16 | int8: which drift thresholds apply",
    "verify-sentences": "text file, one sentence a line (default: the committed sentences)",
    # file server
    "verify-files-url": "file server base URL",
    "verify-manifest": "manifest path or URL (default: <url>/SHA256SUMS)",
    "verify-pool": "the served folder when it is local: enables the planted-symlink probe",
    # S3
    "verify-s3-endpoint": "S3 endpoint URL (credentials from AWS_ACCESS_KEY_ID/_SECRET_...)",
    "verify-s3-bucket": "bucket to verify (must exist)",
    "verify-s3-prefix": "key prefix for the objects the checks write (removed afterwards)",
    # every kind
    "verify-overrides": "Hydra overrides of the harness configs, space-separated "
    "(e.g. 'verify.inference.load.duration_s=10')",
}


def env_name(option: str) -> str:
    """HARNESS_VERIFY_URL for verify-url."""
    return "HARNESS_" + option.upper().replace("-", "_")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness-verify", "mlops-harness conformance checks")
    for name, text in OPTIONS.items():
        group.addoption(
            f"--{name}",
            default=os.environ.get(env_name(name)),
            help=f"{text} (env {env_name(name)})",
        )


def pytest_configure(config: pytest.Config) -> None:
    """Apply --verify-overrides to every configuration the checks compose."""
    text = option(config, "verify-overrides")
    if text:
        import shlex

        from harness import config as harness_config

        harness_config.session_overrides[:] = shlex.split(text)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Keep each target's checks on one pytest-xdist worker, in order (`--dist loadgroup`)."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        target = params.get("target")
        if target is not None and hasattr(target, "name"):
            item.add_marker(pytest.mark.xdist_group(f"target-{target.name}"))


def option(config: pytest.Config, name: str) -> Any:
    """The value of --<name> (or its environment variable), None when not given."""
    value = config.getoption(f"--{name}")
    return None if value in (None, "") else value


def require(config: pytest.Config, name: str, what: str) -> str:
    """The value of --<name>, or skip with the option the check needs."""
    value = option(config, name)
    if value is None:
        pytest.skip(f"no {what} to verify: give --{name} (or {env_name(name)})")
    return value


@pytest.fixture(scope="session")
def verify_metrics() -> dict[str, Any]:
    """Measurements the checks report (latency, throughput, MB/s): shown in the report."""
    return {}


@pytest.fixture
def record_metric(record_property, verify_metrics):
    """record_metric(name, value): into the JUnit XML and the Markdown report."""

    def record(name: str, value: Any) -> None:
        record_property(f"metric:{name}", value)
        verify_metrics[name] = value

    return record
