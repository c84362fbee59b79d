"""Triton model configs: each config.pbtxt parses with Triton's schema, its batching and
instance groups make sense, and its I/O names and types match the ONNX graph (offline, no GPU)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from harness.config import plain
from harness.errors import HarnessError
from harness.serving.repository import parse_config

# Triton data types <-> ONNX TensorProto element types (onnx.TensorProto enum values).
TRITON_TO_ONNX = {
    "TYPE_BOOL": 9,
    "TYPE_UINT8": 2,
    "TYPE_UINT16": 4,
    "TYPE_UINT32": 12,
    "TYPE_UINT64": 13,
    "TYPE_INT8": 3,
    "TYPE_INT16": 5,
    "TYPE_INT32": 6,
    "TYPE_INT64": 7,
    "TYPE_FP16": 10,
    "TYPE_FP32": 1,
    "TYPE_FP64": 11,
    "TYPE_STRING": 8,
    "TYPE_BF16": 16,
}
GPU_ONLY_PLATFORMS = ("tensorrt_plan",)


@dataclass
class ModelCheck:
    """The result of checking one config.pbtxt."""

    path: Path
    name: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what could not be checked, and why


def parse_model_config(path: str | os.PathLike[str]) -> Any:
    """Parse a config.pbtxt with Triton's own protobuf schema (unknown fields are errors)."""
    return parse_config(Path(path).read_text(encoding="utf-8"), str(path))


def expected_io_names(model: str, cfg: DictConfig | None) -> tuple[list[str], list[str]] | None:
    """Input/output names the exporters promise for a model (configs/), or None if unknown."""
    if model == plain(cfg, "model.name"):
        inp, out = plain(cfg, "export.input_name"), plain(cfg, "export.output_name")
        if inp and out:
            return [inp], [out]
    formats = plain(cfg, "embed.formats", {}) or {}
    if model in {f.get("model") for f in formats.values() if isinstance(f, dict)}:
        inp, out = plain(cfg, "embed.model.input_names"), plain(cfg, "embed.model.output_name")
        if inp and out:
            return list(inp), [out]
    return None


def onnx_io(path: Path) -> tuple[dict[str, tuple[int, list[int | None]]], ...]:
    """(inputs, outputs) of an ONNX graph: name -> (element type, dims; None = dynamic)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}

    def table(values: Iterable[Any]) -> dict[str, tuple[int, list[int | None]]]:
        out = {}
        for v in values:
            if v.name in inits:
                continue
            t = v.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
            out[v.name] = (t.elem_type, dims)
        return out

    return table(model.graph.input), table(model.graph.output)


def _data_type_name(value: int) -> str:
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2.DataType.Name(value)


def _compare_onnx(mc: Any, onnx_path: Path, check: ModelCheck) -> None:
    inputs, outputs = onnx_io(onnx_path)
    batched = mc.max_batch_size > 0
    for kind, tensors, graph in (("input", mc.input, inputs), ("output", mc.output, outputs)):
        names = [t.name for t in tensors]
        if sorted(names) != sorted(graph):
            check.problems.append(
                f"{kind} names {sorted(names)} != ONNX graph {kind}s {sorted(graph)} "
                f"({onnx_path.name})"
            )
            continue
        for t in tensors:
            elem, dims = graph[t.name]
            dt = _data_type_name(t.data_type)
            if TRITON_TO_ONNX.get(dt) != elem:
                check.problems.append(f"{kind} {t.name!r}: {dt} but the ONNX graph has type {elem}")
            if t.HasField("reshape"):
                continue
            model_dims = dims[1:] if batched else dims
            if batched and dims and dims[0] is not None:
                check.problems.append(f"{kind} {t.name!r}: ONNX batch dim is fixed ({dims[0]})")
            if len(model_dims) != len(t.dims):
                check.problems.append(
                    f"{kind} {t.name!r}: dims {list(t.dims)} vs ONNX {model_dims} (rank differs)"
                )
                continue
            for c, m in zip(t.dims, model_dims):
                if c != -1 and m is not None and c != m:
                    check.problems.append(f"{kind} {t.name!r}: dims {list(t.dims)} vs ONNX {dims}")
                    break


def check_model_config(
    path: str | os.PathLike[str],
    cfg: DictConfig | None = None,
    repo_models: Mapping[str, Any] | None = None,
) -> ModelCheck:
    """Check one config.pbtxt: parses, batching, instance groups, I/O names vs the ONNX graph."""
    from tritonclient.grpc import model_config_pb2 as pb

    p = Path(path)
    model_dir = p.parent
    check = ModelCheck(path=p, name=model_dir.name)
    try:
        mc = parse_model_config(p)
    except HarnessError as exc:  # the parser's own words, without parse_config's prefix
        check.problems.append(f"does not parse as Triton ModelConfig: {exc.__cause__ or exc}")
        return check
    except UnicodeDecodeError as exc:
        check.problems.append(f"does not parse as Triton ModelConfig: {exc}")
        return check
    if mc.name and mc.name != model_dir.name:
        check.problems.append(f"name {mc.name!r} differs from its directory {model_dir.name!r}")
    platform = mc.platform or mc.backend
    if not platform:
        check.problems.append("neither platform nor backend is set")
    ensemble = mc.platform == "ensemble"
    if mc.HasField("dynamic_batching") and mc.max_batch_size <= 0:
        check.problems.append("dynamic_batching is set but max_batch_size <= 0 (batching is off)")
    for size in mc.dynamic_batching.preferred_batch_size:
        if size > mc.max_batch_size:
            check.problems.append(f"preferred_batch_size {size} > max_batch_size")
    if not mc.input or not mc.output:
        check.problems.append("inputs and outputs must be declared explicitly")
    for t in [*mc.input, *mc.output]:
        if t.data_type == pb.TYPE_INVALID:
            check.problems.append(f"tensor {t.name!r} has no data_type")
        if not t.dims and not t.HasField("reshape") and mc.max_batch_size <= 0:
            check.problems.append(f"tensor {t.name!r} has no dims")
    if not ensemble:
        if not mc.instance_group:
            check.problems.append("no instance_group")
        for g in mc.instance_group:
            if g.count < 1:
                check.problems.append(f"instance_group {g.name or '?'} count {g.count} < 1")
            if mc.platform in GPU_ONLY_PLATFORMS and g.kind == pb.ModelInstanceGroup.KIND_CPU:
                check.problems.append(f"{mc.platform} cannot run on a KIND_CPU instance group")
        versions = [d for d in model_dir.iterdir() if d.is_dir() and d.name.isdigit()]
        if not versions:
            check.problems.append("no numeric version directory (e.g. 1/)")
    else:
        _check_ensemble(mc, check, repo_models or {})

    if mc.backend == "python":
        sources = sorted(model_dir.glob("[0-9]*/model.py")) + sorted(model_dir.glob("model.py"))
        if not sources:
            check.problems.append("python backend model without model.py")
        extra = sorted(set().union(*(third_party_imports(p) for p in sources))) if sources else []
        if extra and "EXECUTION_ENV_PATH" not in mc.parameters:
            check.notes.append(
                f"model.py imports {', '.join(extra)}: not in NVIDIA's tritonserver image; "
                "ship them (EXECUTION_ENV_PATH parameter or a derived image) for containers"
            )
    if mc.platform == "onnxruntime_onnx" or mc.backend == "onnxruntime":
        _check_onnx_names(mc, model_dir, cfg, check)
    elif mc.platform in GPU_ONLY_PLATFORMS:
        expected = expected_io_names(model_dir.name, cfg)
        if expected:
            _compare_names(mc, expected, "the convert config", check)
    return check


# What a python-backend model may import in NVIDIA's image without extra packages.
PYTHON_BACKEND_PROVIDED = {"numpy", "triton_python_backend_utils"}


def third_party_imports(path: Path) -> set[str]:
    """Top-level modules a python-backend model.py imports beyond the stdlib and the image."""
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - PYTHON_BACKEND_PROVIDED


def _compare_names(mc: Any, expected: tuple[list[str], list[str]], src: str, c: ModelCheck) -> None:
    inputs, outputs = sorted(t.name for t in mc.input), sorted(t.name for t in mc.output)
    if inputs != sorted(expected[0]):
        c.problems.append(f"input names {inputs} != {sorted(expected[0])} from {src}")
    if outputs != sorted(expected[1]):
        c.problems.append(f"output names {outputs} != {sorted(expected[1])} from {src}")


def _check_onnx_names(mc: Any, model_dir: Path, cfg: DictConfig | None, c: ModelCheck) -> None:
    filename = mc.default_model_filename or "model.onnx"
    files = sorted(model_dir.glob(f"[0-9]*/{filename}"))
    if files:
        for f in files:
            _compare_onnx(mc, f, c)
        return
    expected = expected_io_names(model_dir.name, cfg)
    if expected:
        _compare_names(mc, expected, "the export/convert config", c)
        c.notes.append(f"no {filename} yet: names checked against the export/convert config")
    else:
        c.notes.append(f"no {filename} and no export config names: I/O names not checked")


def _check_ensemble(mc: Any, c: ModelCheck, models: Mapping[str, Any]) -> None:
    steps = mc.ensemble_scheduling.step
    if not steps:
        c.problems.append("ensemble without ensemble_scheduling steps")
        return
    produced: set[str] = {t.name for t in mc.input}
    consumed: set[str] = set()
    for step in steps:
        target = models.get(step.model_name)
        if target is None:
            c.problems.append(f"ensemble step uses unknown model {step.model_name!r}")
            continue
        t_in, t_out = {t.name for t in target.input}, {t.name for t in target.output}
        for key in step.input_map:
            if key not in t_in:
                c.problems.append(f"step {step.model_name!r}: {key!r} is not one of its inputs")
        for key in step.output_map:
            if key not in t_out:
                c.problems.append(f"step {step.model_name!r}: {key!r} is not one of its outputs")
        consumed |= set(step.input_map.values())
        produced |= set(step.output_map.values())
    for t in mc.input:
        if t.name not in consumed:
            c.problems.append(f"ensemble input {t.name!r} feeds no step")
    for t in mc.output:
        if t.name not in produced:
            c.problems.append(f"ensemble output {t.name!r} is produced by no step")
    for name in consumed - produced:
        c.problems.append(f"ensemble tensor {name!r} is consumed but never produced")


def model_configs(repository: str | os.PathLike[str]) -> list[Path]:
    """Every <model>/config.pbtxt of a model repository."""
    root = Path(repository)
    return sorted(root.glob("*/config.pbtxt")) if root.is_dir() else []


def unconfigured_models(repository: str | os.PathLike[str]) -> list[str]:
    """Model folders (with a numeric version folder) that have no config.pbtxt."""
    root = Path(repository)
    if not root.is_dir():
        return []
    return sorted(
        d.name
        for d in root.iterdir()
        if d.is_dir()
        and not (d / "config.pbtxt").is_file()
        and any(v.is_dir() and v.name.isdigit() for v in d.iterdir())
    )


def check_repository(
    repository: str | os.PathLike[str], cfg: DictConfig | None = None
) -> list[ModelCheck]:
    """Check every config.pbtxt in a repository (ensembles are checked against their steps)."""
    paths = model_configs(repository)
    parsed: dict[str, Any] = {}
    for p in paths:
        try:
            parsed[p.parent.name] = parse_model_config(p)
        except Exception:  # reported by check_model_config below
            pass
    return [check_model_config(p, cfg, parsed) for p in paths]
