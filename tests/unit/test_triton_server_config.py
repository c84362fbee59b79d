"""The typed tritonserver config: every field renders its flag, bad values are one-line errors."""

from __future__ import annotations

from dataclasses import fields, replace

import pytest

from harness.config import compose
from harness.errors import HarnessError
from harness.services.triton_config import TritonServerConfig, merge_flags

CFG = compose()

FULL = TritonServerConfig(
    model_repository="/srv/repo",
    backend_directory="/srv/backends",
    address="127.0.0.1",
    http_port=18000,
    grpc_port=18001,
    metrics_port=18002,
    allow_gpu_metrics=False,
    log_verbose=2,
    model_control_mode="explicit",
    models=("mnist-onnx", "minilm-onnx"),
    http_thread_count=3,
    extra_args=("--exit-on-error=false",),
)


def test_every_field_renders_its_flag() -> None:
    """One flag per field (the address three), in field order, nothing else."""
    assert FULL.to_argv("/bin/tritonserver") == [
        "/bin/tritonserver",
        "--model-repository=/srv/repo",
        "--backend-directory=/srv/backends",
        "--http-address=127.0.0.1",
        "--grpc-address=127.0.0.1",
        "--metrics-address=127.0.0.1",
        "--http-port=18000",
        "--grpc-port=18001",
        "--metrics-port=18002",
        "--allow-gpu-metrics=false",
        "--log-verbose=2",
        "--model-control-mode=explicit",
        "--load-model=mnist-onnx",
        "--load-model=minilm-onnx",
        "--http-thread-count=3",
        "--exit-on-error=false",
    ]
    # Every field is exercised above: a new field without a rendering fails here.
    assert all(getattr(FULL, f.name) not in (None, ()) for f in fields(FULL))


def test_unset_fields_render_nothing() -> None:
    """None leaves tritonserver's default: an empty config is the bare binary."""
    assert TritonServerConfig().to_argv("tritonserver") == ["tritonserver"]
    assert TritonServerConfig(log_verbose=0).flags() == ["--log-verbose=0"]


def test_built_from_the_triton_server_config() -> None:
    """from_config reads how the server behaves from triton.server; placement stays unset."""
    server = CFG.triton.server
    typed = TritonServerConfig.from_config(server)
    assert typed.model_control_mode == server.model_control_mode
    assert typed.log_verbose == server.log_verbose
    assert typed.http_thread_count == server.http_thread_count
    assert typed.allow_gpu_metrics is server.allow_gpu_metrics
    assert typed.extra_args == tuple(server.extra_args)
    assert typed.model_repository is None and typed.http_port is None and typed.models == ()
    more = compose(
        ["triton.server.extra_args=['--exit-on-error=false']", "triton.server.log_verbose=1"]
    )
    assert TritonServerConfig.from_config(more.triton.server).flags() == [
        "--allow-gpu-metrics=false",
        "--log-verbose=1",
        "--model-control-mode=explicit",
        "--http-thread-count=1",
        "--exit-on-error=false",
    ]


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"model_control_mode": "explcit"}, "model_control_mode='explcit': expected none, poll"),
        ({"log_verbose": -1}, "log_verbose=-1: expected >= 0"),
        ({"log_verbose": "2"}, "log_verbose='2': expected an integer"),
        ({"log_verbose": True}, "log_verbose=True: expected an integer"),
        ({"http_port": 70000}, "http_port=70000: expected 1..65535"),
        ({"grpc_port": 0}, "grpc_port=0: expected 1..65535"),
        ({"http_thread_count": 0}, "http_thread_count=0: expected >= 1"),
        ({"allow_gpu_metrics": "no"}, "allow_gpu_metrics='no': expected true or false"),
        ({"model_repository": " "}, "model_repository=' ': expected a non-empty string"),
        ({"model_control_mode": "none"}, "only with model_control_mode=explicit, not none"),
        ({"models": ("a=b",)}, "models=['a=b']: expected model names"),
        ({"extra_args": ("exit-on-error=false",)}, "'exit-on-error=false' is not a --name=value"),
        (
            {"extra_args": ("--log-verbose=1",)},
            "sets --log-verbose, which triton.server.log_verbose",
        ),
        ({"extra_args": ("--http-address=0.0.0.0",)}, "which triton.server.address renders"),
    ],
)
def test_invalid_values_are_one_line_errors(changes: dict, message: str) -> None:
    """Each bad value names its triton.server key and what is expected, in one line."""
    with pytest.raises(HarnessError) as err:
        replace(FULL, **changes)
    text = str(err.value)
    assert text.startswith("triton.server.") and message in text and "\n" not in text


def test_a_bad_config_value_fails_when_read() -> None:
    """A wrong value in triton.server is refused by from_config, before any server starts."""
    cfg = compose(["triton.server.log_verbose=-3"])
    with pytest.raises(HarnessError, match=r"triton.server.log_verbose=-3: expected >= 0"):
        TritonServerConfig.from_config(cfg.triton.server)


def test_merge_adds_what_the_base_lacks_and_refuses_disagreement() -> None:
    """Compose's command places the server; typed flags are added where compose is silent."""
    base = ["tritonserver", "--model-repository=/models", "--allow-gpu-metrics=false"]
    typed = TritonServerConfig(
        allow_gpu_metrics=False, log_verbose=0, model_control_mode="explicit", models=("m",)
    )
    assert merge_flags(base, typed.flags(), "compose triton") == [
        *base,
        "--log-verbose=0",
        "--model-control-mode=explicit",
        "--load-model=m",
    ]
    with pytest.raises(HarnessError) as err:
        merge_flags(base, replace(typed, allow_gpu_metrics=True).flags(), "compose triton")
    assert str(err.value) == (
        "compose triton has --allow-gpu-metrics=false, triton.server renders "
        "--allow-gpu-metrics=true: make them agree"
    )
