"""The canonical model-repository entries of MiniLM: one model per format, tokenizer, ensembles.

The config.pbtxt files are generated from `configs/embed/minilm.yaml` (and committed); the
tokenizer's python-backend `model.py` lives in the repository itself. Weights are written there
by `harness convert` and git-ignored.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig
from tritonclient.grpc import model_config_pb2 as mc

from harness.paths import resolve
from harness.serving.repository import format_config, read_config, set_parameter, write_config

HEADER = (
    "# Generated from configs/embed/minilm.yaml by harness.embeddings.repository "
    "(`harness convert --configs`).\n"
)
_INT64, _FP32, _STRING = mc.TYPE_INT64, mc.TYPE_FP32, mc.TYPE_STRING


def _io(cfg: mc.ModelConfig, inputs: list[tuple], outputs: list[tuple]) -> None:
    for name, dtype, dims in inputs:
        cfg.input.add(name=name, data_type=dtype, dims=dims)
    for name, dtype, dims in outputs:
        cfg.output.add(name=name, data_type=dtype, dims=dims)


def _serving(cfg: mc.ModelConfig, ecfg: DictConfig, gpu: bool = False) -> None:
    s = ecfg.serve
    cfg.max_batch_size = int(s.max_batch_size)
    cfg.dynamic_batching.preferred_batch_size.extend(int(b) for b in s.preferred_batch_size)
    cfg.dynamic_batching.max_queue_delay_microseconds = int(s.max_queue_delay_microseconds)
    # TensorRT plans run only on a GPU instance; everything else on CPU instances
    kind = mc.ModelInstanceGroup.KIND_GPU if gpu else mc.ModelInstanceGroup.KIND_CPU
    cfg.instance_group.add(count=int(s.instance_count), kind=kind)


def model_config(ecfg: DictConfig, fmt: str) -> mc.ModelConfig:
    """config.pbtxt of the model serving format `fmt` (token ids in, embeddings out)."""
    f = ecfg.formats[fmt]
    m = ecfg.model
    cfg = mc.ModelConfig(name=f.model)
    if f.kind == "tensorrt":
        cfg.platform = "tensorrt_plan"
        cfg.default_model_filename = "model.plan"
    else:
        cfg.platform = "onnxruntime_onnx"
        if f.runtime == "openvino":
            acc = cfg.optimization.execution_accelerators.cpu_execution_accelerator.add()
            acc.name = "openvino"
    _io(
        cfg,
        [(n, _INT64, [-1]) for n in m.input_names],
        [(m.output_name, _FP32, [int(m.dim)])],
    )
    _serving(cfg, ecfg, gpu=f.kind == "tensorrt")
    if f.kind != "tensorrt":
        set_parameter(cfg, "intra_op_thread_count", str(int(ecfg.serve.intra_op_threads)))
    return cfg


def tokenizer_config(ecfg: DictConfig) -> mc.ModelConfig:
    """config.pbtxt of the python-backend tokenizer: TYPE_STRING text -> ids + mask."""
    cfg = mc.ModelConfig(name=ecfg.tokenizer_model, backend="python")
    _io(
        cfg,
        [("text", _STRING, [1])],
        [(n, _INT64, [-1]) for n in ecfg.model.input_names],
    )
    _serving(cfg, ecfg)
    set_parameter(cfg, "model_package", ecfg.model.package)
    set_parameter(cfg, "max_length", str(int(ecfg.model.max_length)))
    return cfg


def ensemble_name(ecfg: DictConfig, fmt: str) -> str:
    """Name of the text-in ensemble of format `fmt`."""
    return ecfg.formats[fmt].model + ecfg.ensemble_suffix


def ensemble_config(ecfg: DictConfig, fmt: str) -> mc.ModelConfig:
    """config.pbtxt of the ensemble tokenizer -> format model (raw strings in, embeddings out)."""
    m = ecfg.model
    cfg = mc.ModelConfig(name=ensemble_name(ecfg, fmt), platform="ensemble")
    cfg.max_batch_size = int(ecfg.serve.max_batch_size)
    _io(cfg, [("text", _STRING, [1])], [(m.output_name, _FP32, [int(m.dim)])])
    tok = cfg.ensemble_scheduling.step.add(model_name=ecfg.tokenizer_model, model_version=-1)
    tok.input_map["text"] = "text"
    enc = cfg.ensemble_scheduling.step.add(model_name=ecfg.formats[fmt].model, model_version=-1)
    for n in m.input_names:
        tok.output_map[n] = n
        enc.input_map[n] = n
    enc.output_map[m.output_name] = m.output_name
    return cfg


def canonical_configs(ecfg: DictConfig) -> dict[str, mc.ModelConfig]:
    """Every MiniLM entry of the canonical repository, by model name."""
    out = {ecfg.tokenizer_model: tokenizer_config(ecfg)}
    for fmt in ecfg.formats:
        out[ecfg.formats[fmt].model] = model_config(ecfg, fmt)
        out[ensemble_name(ecfg, fmt)] = ensemble_config(ecfg, fmt)
    return out


def write_configs(ecfg: DictConfig, root: Path | None = None) -> list[str]:
    """(Re)write the configs whose content changed; return the names written."""
    root = Path(root) if root is not None else resolve(ecfg.repository)
    written = []
    for name, cfg in canonical_configs(ecfg).items():
        vdir = root / name / "1"
        if vdir.is_dir() and not (vdir / "model.py").exists() and not (vdir / ".gitkeep").exists():
            (vdir / ".gitkeep").touch()  # weights are git-ignored; the folder stays in git
        path = root / name / "config.pbtxt"
        if path.is_file() and format_config(read_config(path)) == format_config(cfg):
            continue
        vdir.mkdir(parents=True, exist_ok=True)
        if not (vdir / "model.py").exists():
            (vdir / ".gitkeep").touch()
        write_config(cfg, path, header=HEADER)
        written.append(name)
    return written


def served_models(ecfg: DictConfig, formats: list[str]) -> list[str]:
    """Model names to serve for `formats`: each model, its ensemble and the tokenizer."""
    names = [ecfg.tokenizer_model]
    for fmt in formats:
        names += [ecfg.formats[fmt].model, ensemble_name(ecfg, fmt)]
    return names
