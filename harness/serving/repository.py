"""Triton model repositories: read, write and validate `config.pbtxt` (protobuf text format).

The schema is Triton's own `ModelConfig` message (shipped in tritonclient), so whatever parses
here parses in the server, and a typo in a field name is an error, not a silently ignored key.
"""

from __future__ import annotations

import json
from pathlib import Path

from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2 as mc

from harness.errors import HarnessError
from harness.io import atomic_open

ModelConfig = mc.ModelConfig
CONFIG_NAME = "config.pbtxt"
# Platforms/backends that mean "ONNX Runtime" in NVIDIA's container.
ONNX_PLATFORMS = ("onnxruntime_onnx",)
ONNX_BACKENDS = ("onnxruntime",)
TENSORRT_PLATFORMS = ("tensorrt_plan",)
TENSORRT_BACKENDS = ("tensorrt",)


def parse_config(text: str, source: str = "<config>") -> mc.ModelConfig:
    """Parse protobuf text into a ModelConfig; a syntax/field error raises one clear line."""
    cfg = mc.ModelConfig()
    try:
        text_format.Parse(text, cfg)
    except text_format.ParseError as exc:
        raise HarnessError(f"{source}: invalid config.pbtxt: {exc}") from exc
    return cfg


def read_config(path: str | Path) -> mc.ModelConfig:
    """Read a model's config.pbtxt (the file, or the model directory holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / CONFIG_NAME
    try:
        text = path.read_text()
    except OSError as exc:
        raise HarnessError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return parse_config(text, str(path))


def format_config(cfg: mc.ModelConfig) -> str:
    """Render a ModelConfig as protobuf text (the config.pbtxt format)."""
    return text_format.MessageToString(cfg, use_short_repeated_primitives=True)


def write_config(cfg: mc.ModelConfig, path: str | Path, header: str = "") -> Path:
    """Validate and write a config.pbtxt atomically (path: the file or the model directory)."""
    path = Path(path)
    if path.is_dir() or path.suffix != ".pbtxt":
        path = path / CONFIG_NAME
    problems = validate_config(cfg)
    if problems:
        raise HarnessError(f"refusing to write {path}: {problems[0]}")
    with atomic_open(path) as fh:
        fh.write(header + format_config(cfg))
    return path


def config_to_json(cfg: mc.ModelConfig) -> str:
    """The JSON form Triton's repository API accepts as a load-time config override."""
    return json_format.MessageToJson(cfg, preserving_proto_field_name=True)


def config_from_json(data: str | dict) -> mc.ModelConfig:
    """A ModelConfig from Triton's JSON (e.g. the model config endpoint's answer)."""
    text = data if isinstance(data, str) else json.dumps(data)
    cfg = mc.ModelConfig()
    json_format.Parse(text, cfg, ignore_unknown_fields=True)
    return cfg


def is_onnx(cfg: mc.ModelConfig) -> bool:
    """True for a model NVIDIA's container runs with its ONNX Runtime backend."""
    return cfg.platform in ONNX_PLATFORMS or cfg.backend in ONNX_BACKENDS


def is_tensorrt(cfg: mc.ModelConfig) -> bool:
    """True for a TensorRT plan model."""
    return cfg.platform in TENSORRT_PLATFORMS or cfg.backend in TENSORRT_BACKENDS


def is_python(cfg: mc.ModelConfig) -> bool:
    """True for a python-backend model."""
    return cfg.backend == "python"


def is_ensemble(cfg: mc.ModelConfig) -> bool:
    """True for an ensemble (a pipeline of other models, no weights of its own)."""
    return cfg.platform == "ensemble"


def uses_openvino(cfg: mc.ModelConfig) -> bool:
    """True when the config asks ONNX Runtime for the OpenVINO CPU execution accelerator."""
    accs = cfg.optimization.execution_accelerators.cpu_execution_accelerator
    return any(a.name.lower() == "openvino" for a in accs)


def validate_config(cfg: mc.ModelConfig, model_dir: Path | None = None) -> list[str]:
    """Problems that would make Triton reject the model or silently serve it wrong (empty: ok)."""
    problems: list[str] = []
    name = cfg.name or "<unnamed>"
    if not cfg.name:
        problems.append("config has no name")
    elif model_dir is not None and cfg.name != model_dir.name:
        problems.append(f"model '{name}': name differs from its directory '{model_dir.name}'")
    if not cfg.platform and not cfg.backend:
        problems.append(f"model '{name}': neither platform nor backend is set")
    if cfg.max_batch_size < 0:
        problems.append(f"model '{name}': max_batch_size must be >= 0")
    if cfg.HasField("dynamic_batching") and cfg.max_batch_size == 0:
        problems.append(
            f"model '{name}': dynamic_batching needs max_batch_size > 0 (with 0 it is silently off)"
        )
    prefer = list(cfg.dynamic_batching.preferred_batch_size)
    if any(p < 1 or p > cfg.max_batch_size for p in prefer) and cfg.max_batch_size > 0:
        problems.append(f"model '{name}': preferred_batch_size {prefer} outside 1..max_batch_size")
    if not is_ensemble(cfg) and not is_python(cfg):
        if not cfg.input:
            problems.append(f"model '{name}': no inputs declared")
        if not cfg.output:
            problems.append(f"model '{name}': no outputs declared")
    for kind, tensors in (("input", cfg.input), ("output", cfg.output)):
        seen: set[str] = set()
        for t in tensors:
            if not t.name:
                problems.append(f"model '{name}': an {kind} has no name")
            elif t.name in seen:
                problems.append(f"model '{name}': duplicate {kind} '{t.name}'")
            seen.add(t.name)
            if t.data_type == mc.TYPE_INVALID:
                problems.append(f"model '{name}': {kind} '{t.name}' has no data_type")
            if not t.dims and not t.HasField("reshape"):
                problems.append(f"model '{name}': {kind} '{t.name}' has no dims")
            if any(d < -1 or d == 0 for d in t.dims):
                problems.append(
                    f"model '{name}': {kind} '{t.name}' has invalid dims {list(t.dims)}"
                )
    for group in cfg.instance_group:
        if group.count < 0:
            problems.append(f"model '{name}': instance_group count must be >= 0")
    return problems


def check_config(cfg: mc.ModelConfig, model_dir: Path | None = None) -> mc.ModelConfig:
    """Raise HarnessError naming the first problem of an invalid config; return it otherwise."""
    problems = validate_config(cfg, model_dir)
    if problems:
        where = f"{model_dir}: " if model_dir is not None else ""
        raise HarnessError(where + problems[0])
    return cfg


def leading_comments(path: str | Path) -> str:
    """The comment block at the top of a config.pbtxt (kept when the file is rewritten)."""
    path = Path(path)
    path = path / CONFIG_NAME if path.is_dir() else path
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line + "\n")
    return "".join(lines)


def version_dirs(model_dir: Path) -> list[Path]:
    """The numeric version folders of a model directory, oldest first."""
    return sorted(
        (p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()),
        key=lambda p: int(p.name),
    )


def list_models(repository: str | Path) -> list[str]:
    """Names of the model folders (those holding a config.pbtxt) in a repository."""
    repo = Path(repository)
    if not repo.is_dir():
        raise HarnessError(f"model repository {repo} does not exist")
    return sorted(p.name for p in repo.iterdir() if (p / CONFIG_NAME).is_file())


def dtype_name(data_type: int) -> str:
    """Triton's short dtype name ('FP32', 'INT64', 'BYTES') for a DataType enum value."""
    name = mc.DataType.Name(data_type).removeprefix("TYPE_")
    return "BYTES" if name == "STRING" else name


def set_parameter(cfg: mc.ModelConfig, key: str, value: object) -> None:
    """Set a string parameter of the config (Triton parameters are strings)."""
    cfg.parameters[key].string_value = str(value)


def get_parameter(cfg: mc.ModelConfig, key: str, default: str | None = None) -> str | None:
    """A string parameter of the config, or `default`."""
    return cfg.parameters[key].string_value if key in cfg.parameters else default


def instance_count(cfg: mc.ModelConfig) -> int:
    """Total instances the config asks for (Triton's default is one per device: 1 on CPU)."""
    return sum(g.count or 1 for g in cfg.instance_group) or 1


def apply_tuning(
    cfg: mc.ModelConfig,
    *,
    batching: bool,
    max_queue_delay_us: int | None = None,
    preferred_batch_size: list[int] | None = None,
    instances: int | None = None,
    intra_op_threads: int | None = None,
) -> mc.ModelConfig:
    """A copy of `cfg` with the tunables set (no dynamic_batching block when batching=False)."""
    out = mc.ModelConfig()
    out.CopyFrom(cfg)
    if batching:
        db = out.dynamic_batching
        if max_queue_delay_us is not None:
            db.max_queue_delay_microseconds = int(max_queue_delay_us)
        if preferred_batch_size is not None:
            del db.preferred_batch_size[:]
            db.preferred_batch_size.extend(
                int(p) for p in preferred_batch_size if p <= out.max_batch_size
            )
    else:
        out.ClearField("dynamic_batching")
    if instances is not None:
        del out.instance_group[:]
        out.instance_group.add(count=int(instances), kind=mc.ModelInstanceGroup.KIND_CPU)
    if intra_op_threads is not None:
        set_parameter(out, "intra_op_thread_count", int(intra_op_threads))
    return out
