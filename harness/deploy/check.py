"""Offline validation of every deployment file: compose, workflows, Triton model configs.

Nothing here needs Docker, a GPU or the network. Each check returns a list of problems (empty:
fine), one line each, naming the file and what is wrong, so `harness stack check` and the unit
tests report the same thing.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from harness.paths import ROOT, resolve
from harness.services.docker import (
    image_problem,
    interpolate_tree,
    load_compose,
    published_ports,
)

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


def _select(cfg: DictConfig | None, key: str, default: Any = None) -> Any:
    if cfg is None:
        return default
    value = OmegaConf.select(cfg, key, default=default)
    if isinstance(value, DictConfig) or OmegaConf.is_list(value):
        return OmegaConf.to_container(value, resolve=True)
    return value


# ----------------------------------------------------------------------------- compose policy


def _seconds(value: Any) -> float:
    """A compose duration ("1m30s", "500ms", "10s", 10) in seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    total, num = 0.0, ""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6}
    s = str(value).strip()
    i = 0
    while i < len(s):
        c = s[i]
        if c.isdigit() or c == ".":
            num += c
            i += 1
            continue
        unit = s[i : i + 2] if s[i : i + 2] in ("ms", "us") else c
        total += float(num or 0) * units[unit]
        num = ""
        i += len(unit)
    return total + (float(num) if num else 0.0)


def _one_shot(svc: Mapping[str, Any]) -> bool:
    return str(svc.get("restart", "no")) == "no" and "healthcheck" not in svc


def _bind_mounts(svc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Volumes of a service in long form: {type, source, target, read_only}."""
    out = []
    for v in svc.get("volumes", []) or []:
        if isinstance(v, dict):
            out.append(v)
            continue
        parts = str(v).split(":")
        mode = parts[2] if len(parts) > 2 else ""
        out.append(
            {
                "type": "bind" if parts[0].startswith((".", "/", "~")) else "volume",
                "source": parts[0],
                "target": parts[1] if len(parts) > 1 else parts[0],
                "read_only": "ro" in mode.split(","),
            }
        )
    return out


def compose_problems(cfg: DictConfig, path: str | os.PathLike[str] | None = None) -> list[str]:
    """Policy of the compose file: pinned images, health checks, published ports, mounts."""
    p = Path(path) if path is not None else resolve(cfg.stack.compose_file)
    raw = load_compose(p)
    services: dict[str, Any] = raw["services"]
    # Interpolated with an empty environment: the defaults a plain `docker compose up` uses.
    resolved = interpolate_tree(services, {})
    floating = list(cfg.stack.check.floating_tags)
    max_interval = float(cfg.stack.check.max_healthcheck_interval_s)
    problems: list[str] = []
    named_volumes = set((raw.get("volumes") or {}).keys())

    for name, svc in resolved.items():
        where = f"{p.name}: service {name!r}"
        prob = image_problem(svc.get("image"), floating)
        if svc.get("build") and not svc.get("image"):
            prob = "is built locally, not a pinned image"
        if prob:
            problems.append(f"{where}: {prob}")
        hc = svc.get("healthcheck")
        if hc is None:
            adopters = [
                other
                for other, osvc in resolved.items()
                if isinstance(osvc.get("depends_on"), dict)
                and (osvc["depends_on"].get(name) or {}).get("condition")
                == "service_completed_successfully"
            ]
            if not _one_shot(svc):
                problems.append(f"{where}: no healthcheck")
            elif not adopters:
                # `up --wait` counts an exited container nobody waits for as a failure.
                problems.append(
                    f"{where}: one-shot service that no service depends on with "
                    "condition service_completed_successfully"
                )
        elif hc.get("disable") or not hc.get("test") or hc.get("test") == ["NONE"]:
            problems.append(f"{where}: healthcheck disabled or empty")
        elif _seconds(hc.get("interval", "30s")) > max_interval:
            problems.append(f"{where}: healthcheck interval {hc['interval']} > {max_interval:g}s")
        deps = svc.get("depends_on") or {}
        for dep in deps if isinstance(deps, (list, dict)) else []:
            if dep not in resolved:
                problems.append(f"{where}: depends_on unknown service {dep!r}")
        for vol in _bind_mounts(svc):
            if vol.get("type") == "volume" and vol.get("source") not in named_volumes:
                problems.append(f"{where}: volume {vol.get('source')!r} is not declared")

    # The ports the tests and docker backends use: published under the configured variable.
    for svc_name, ports in _select(cfg, "stack.ports", {}).items():
        where = f"{p.name}: service {svc_name!r}"
        if svc_name not in services:
            problems.append(f"{where}: missing (configs/stack ports name it)")
            continue
        default_map = published_ports(resolved[svc_name])
        for label, spec in ports.items():
            target, var, default = int(spec["container"]), spec["env"], int(spec["default"])
            if default_map.get(target) != default:
                problems.append(
                    f"{where}: {label} port {target} not published on host port {default} "
                    f"(published: {default_map.get(target, 'no')})"
                )
                continue
            moved = published_ports(interpolate_tree(services[svc_name], {var: "1"}))
            if moved.get(target) != 1:
                problems.append(f"{where}: {label} port {target} does not follow ${{{var}}}")

    if raw.get("name") != cfg.stack.project:
        # `harness stack` passes -p stack.project; plain `docker compose` uses the file's name.
        problems.append(f"{p.name}: project name {raw.get('name')!r} != stack.project")
    problems += _consistency_problems(cfg, p.name, resolved)
    return problems


def _consistency_problems(cfg: DictConfig, fname: str, svcs: Mapping[str, Any]) -> list[str]:
    """Compose agrees with what the other services' configs pin (checked once they exist)."""
    problems: list[str] = []
    pairs = [
        ("triton", "triton.docker.image"),
        ("minio", "storage.docker.image"),
    ]
    for svc, key in pairs:
        want = _select(cfg, key)
        have = svcs.get(svc, {}).get("image")
        if want and have and want != have:
            problems.append(f"{fname}: service {svc!r} image {have} differs from {key}={want}")
    bucket = _select(cfg, "storage.bucket")
    init_env = svcs.get("minio-init", {}).get("environment") or {}
    if bucket and isinstance(init_env, dict) and init_env.get("HARNESS_S3_BUCKET") != bucket:
        problems.append(
            f"{fname}: minio-init creates bucket {init_env.get('HARNESS_S3_BUCKET')!r}, "
            f"storage.bucket is {bucket!r}"
        )
    triton = svcs.get("triton", {})
    mount = _select(cfg, "triton.docker.repository_mount", "/models")
    repo = [v for v in _bind_mounts(triton) if v.get("target") == mount]
    if triton and not repo:
        problems.append(f"{fname}: triton does not mount the model repository at {mount}")
    for v in repo:
        if not v.get("read_only"):
            problems.append(f"{fname}: triton mounts the model repository writable")
        if Path(str(v.get("source"))).resolve() != resolve(cfg.paths.model_repository).resolve():
            src = v.get("source")
            problems.append(f"{fname}: triton mounts {src}, not paths.model_repository")
        cmd = " ".join(map(str, triton.get("command") or []))
        if f"--model-repository={mount}" not in cmd:
            problems.append(f"{fname}: triton command does not serve --model-repository={mount}")
    files = svcs.get("files", {})
    root = _select(cfg, "files.server.nginx.container_root", "/usr/share/nginx/html")
    pool = [v for v in _bind_mounts(files) if v.get("target") == root]
    if files and (not pool or not all(v.get("read_only") for v in pool)):
        problems.append(f"{fname}: files does not mount the pool read-only at {root}")
    listen = _select(cfg, "files.server.nginx.container_port")
    published = _select(cfg, "stack.ports.files.http.container")
    if files and listen and published and int(listen) != int(published):
        problems.append(
            f"{fname}: nginx listens on {listen} (files.server.nginx.container_port), "
            f"compose publishes container port {published}"
        )
    want = _select(cfg, "files.server.nginx.image")
    have = files.get("image")
    if want and have and not same_release(want, have):
        problems.append(
            f"{fname}: service 'files' image {have} is not files.server.nginx.image={want}"
        )
    return problems


def same_release(want: str, have: str) -> bool:
    """`have` is `want`, or pins a patch of the release line `want` names (1.27 -> 1.27.4)."""
    if want == have:
        return True
    (w_repo, _, w_tag), (h_repo, _, h_tag) = want.rpartition(":"), have.rpartition(":")
    w_ver, _, w_suffix = w_tag.partition("-")
    h_ver, _, h_suffix = h_tag.partition("-")
    return (
        w_repo == h_repo
        and w_suffix == h_suffix
        and h_ver.startswith(w_ver + ".")
        and all(part.isdigit() for part in w_ver.split("."))
    )


# ----------------------------------------------------------------------------- schemas, actionlint


def _tool(name: str) -> str | None:
    """A console script from PATH or from this interpreter's bin (the venv's dev extras)."""
    found = shutil.which(name)
    if found:
        return found
    cand = Path(sys.executable).parent / name
    return str(cand) if cand.is_file() and os.access(cand, os.X_OK) else None


def schema_problems(schema: str, files: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Validate files against a check-jsonschema built-in schema (vendored: no network)."""
    # In-process (the same click command the CLI and the pre-commit hook run): a subprocess per
    # call would cost an interpreter start and the jsonschema imports each time.
    from check_jsonschema import main as cli

    buf = io.StringIO()
    args = ["--builtin-schema", schema, *map(str, files)]
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        try:
            rc = cli.main(args, standalone_mode=False)
        except SystemExit as exc:
            rc = exc.code
        except Exception as exc:  # a file that is not YAML/JSON at all, say
            print(f"{type(exc).__name__}: {exc}")
            rc = 1
    if not rc:
        return []
    lines = [ln.strip() for ln in buf.getvalue().splitlines() if ln.strip()]
    errors = [ln for ln in lines if "::" in ln] or lines[-3:]
    return [f"{schema}: {ln}" for ln in errors]


def actionlint_problems(files: Sequence[str | os.PathLike[str]]) -> list[str] | None:
    """actionlint's findings on the workflows; None when actionlint is not installed."""
    exe = _tool("actionlint")
    if exe is None:
        return None
    proc = subprocess.run(
        [exe, "-oneline", "-no-color", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    if proc.returncode == 0:
        return []
    lines = [ln.strip() for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    return [f"actionlint: {ln}" for ln in lines] or [f"actionlint: exit {proc.returncode}"]


# ----------------------------------------------------------------------------- Triton model configs


@dataclass
class ModelCheck:
    """The result of checking one config.pbtxt."""

    path: Path
    name: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what could not be checked, and why


def parse_model_config(path: str | os.PathLike[str]) -> Any:
    """Parse a config.pbtxt with Triton's own protobuf schema (unknown fields are errors)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    cfg = model_config_pb2.ModelConfig()
    text_format.Parse(Path(path).read_text(encoding="utf-8"), cfg)
    return cfg


def expected_io_names(model: str, cfg: DictConfig | None) -> tuple[list[str], list[str]] | None:
    """Input/output names the exporters promise for a model (configs/), or None if unknown."""
    if model == _select(cfg, "model.name"):
        inp, out = _select(cfg, "export.input_name"), _select(cfg, "export.output_name")
        if inp and out:
            return [inp], [out]
    formats = _select(cfg, "embed.formats", {}) or {}
    if model in {f.get("model") for f in formats.values() if isinstance(f, dict)}:
        inp, out = _select(cfg, "embed.model.input_names"), _select(cfg, "embed.model.output_name")
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
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as pb

    p = Path(path)
    model_dir = p.parent
    check = ModelCheck(path=p, name=model_dir.name)
    try:
        mc = parse_model_config(p)
    except (text_format.ParseError, UnicodeDecodeError) as exc:
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
