"""tritonserver's command line as a small typed config: built once, rendered by every backend.

`TritonServerConfig.from_config(cfg.triton.server)` reads what a server does (model control,
verbosity, threads, extra flags); a backend fills in where it runs (repository, backend
directory, address, ports, models) with `dataclasses.replace` and renders `to_argv()` (local
binary) or `flags()` merged into docker-compose.yml's command (`merge_flags`, docker backend).
Invalid values are one-line HarnessErrors naming the `triton.server` key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from harness.errors import HarnessError

MODEL_CONTROL_MODES = ("none", "poll", "explicit")
WHERE = "triton.server"

# field -> the tritonserver flag it renders ("address" renders three flags: http, grpc, metrics)
_FLAGS = {
    "model_repository": ("--model-repository",),
    "backend_directory": ("--backend-directory",),
    "address": ("--http-address", "--grpc-address", "--metrics-address"),
    "http_port": ("--http-port",),
    "grpc_port": ("--grpc-port",),
    "metrics_port": ("--metrics-port",),
    "allow_gpu_metrics": ("--allow-gpu-metrics",),
    "log_verbose": ("--log-verbose",),
    "model_control_mode": ("--model-control-mode",),
    "models": ("--load-model",),
    "http_thread_count": ("--http-thread-count",),
}
# Read from `triton.server`; the rest is where one server runs, filled in by its backend.
_FROM_CONFIG = (
    "log_verbose",
    "model_control_mode",
    "http_thread_count",
    "allow_gpu_metrics",
    "extra_args",
)


def flag_name(arg: str) -> str:
    """`--name` of a `--name=value` (or bare `--name`) argument."""
    return arg.split("=", 1)[0]


@dataclass(frozen=True)
class TritonServerConfig:
    """The tritonserver flags the harness sets, as typed fields (None: tritonserver's default)."""

    model_repository: str | None = None
    backend_directory: str | None = None
    address: str | None = None  # HTTP, gRPC and metrics listen address
    http_port: int | None = None
    grpc_port: int | None = None
    metrics_port: int | None = None
    allow_gpu_metrics: bool | None = None
    log_verbose: int | None = None
    model_control_mode: str | None = None
    models: tuple[str, ...] = ()  # --load-model, one each (explicit model control only)
    http_thread_count: int | None = None
    extra_args: tuple[str, ...] = ()  # --name=value flags passed as they are

    def __post_init__(self) -> None:
        for name in ("http_port", "grpc_port", "metrics_port"):
            _check_int(self, name, 1, 65535)
        _check_int(self, "log_verbose", 0, None)
        _check_int(self, "http_thread_count", 1, None)
        if self.allow_gpu_metrics is not None and not isinstance(self.allow_gpu_metrics, bool):
            _bad(f"allow_gpu_metrics={self.allow_gpu_metrics!r}: expected true or false")
        mode = self.model_control_mode
        if mode is not None and mode not in MODEL_CONTROL_MODES:
            _bad(f"model_control_mode={mode!r}: expected {', '.join(MODEL_CONTROL_MODES)}")
        for name in ("model_repository", "backend_directory", "address"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                _bad(f"{name}={value!r}: expected a non-empty string")
        if self.models and mode != "explicit":
            _bad(f"models are loaded by name only with model_control_mode=explicit, not {mode}")
        if any(not isinstance(m, str) or not m or "=" in m for m in self.models):
            _bad(f"models={list(self.models)!r}: expected model names")
        typed = {flag: name for name, flags in _FLAGS.items() for flag in flags}
        for arg in self.extra_args:
            if not isinstance(arg, str) or not arg.startswith("--") or len(arg) < 3:
                _bad(f"extra_args: {arg!r} is not a --name=value flag")
            if flag_name(arg) in typed:
                _bad(
                    f"extra_args sets {flag_name(arg)}, which {WHERE}.{typed[flag_name(arg)]} "
                    "renders: set that key instead"
                )

    @classmethod
    def from_config(cls, server: Mapping[str, Any]) -> TritonServerConfig:
        """The server behaviour of `triton.server` (where it runs is left to the backend)."""
        values: dict[str, Any] = {}
        for name in _FROM_CONFIG:
            if name not in server or server[name] is None:
                continue
            value = server[name]
            values[name] = tuple(str(a) for a in value) if name == "extra_args" else value
        return cls(**values)

    def flags(self) -> list[str]:
        """The tritonserver flags of every field that is set, in field order."""
        out: list[str] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "extra_args":
                out += list(value)
            elif f.name == "models":
                out += [f"--load-model={m}" for m in value]
            elif value is not None:
                text = str(value).lower() if isinstance(value, bool) else str(value)
                out += [f"{flag}={text}" for flag in _FLAGS[f.name]]
        return out

    def to_argv(self, binary: str) -> list[str]:
        """The whole command line: `binary` and its flags."""
        return [str(binary), *self.flags()]


def merge_flags(command: Sequence[str], flags: Sequence[str], where: str) -> list[str]:
    """`command` plus the `flags` it lacks; a flag it sets to another value is an error.

    Both sides must agree where they overlap: the base (docker-compose.yml's command, named by
    `where`) places the server, the typed config says how it behaves.
    """
    have = {flag_name(a): a for a in command if a.startswith("--")}
    out = list(command)
    for arg in flags:
        name = flag_name(arg)
        if name == "--load-model" or name not in have:
            out.append(arg)
        elif have[name] != arg:
            raise HarnessError(f"{where} has {have[name]}, {WHERE} renders {arg}: make them agree")
    return out


def _check_int(cfg: TritonServerConfig, name: str, low: int, high: int | None) -> None:
    value = getattr(cfg, name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        _bad(f"{name}={value!r}: expected an integer")
    if value < low or (high is not None and value > high):
        bounds = f"{low}..{high}" if high is not None else f">= {low}"
        _bad(f"{name}={value}: expected {bounds}")


def _bad(message: str) -> None:
    raise HarnessError(f"{WHERE}.{message}")
