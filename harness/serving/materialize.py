"""Materialize a canonical (container-ready) model repository for the embedded tritonserver.

The tritonserver binary of the nvidia-pytriton wheel has only the python backend. Each
`onnxruntime_onnx` model becomes a python-backend model with the same name, inputs, outputs,
max_batch_size, dynamic batching and instance groups whose `model.py` (harness/serving/pb_model.py)
runs the very same ONNX file (symlinked, not copied) with onnxruntime, or with OpenVINO when the
config asks for the OpenVINO CPU accelerator. Python models and ensembles are copied as they are.
A model this host cannot load (TensorRT, a backend the binary lacks, ONNX without weights yet) is
skipped with the reason, and so is every ensemble with such a member (recursively): tritonserver
refuses to start with an ensemble whose members are missing, and everything else should serve.
The canonical repository is only read.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from harness.errors import HarnessError
from harness.serving.repository import (
    CONFIG_NAME,
    check_config,
    get_parameter,
    is_ensemble,
    is_onnx,
    is_python,
    is_tensorrt,
    list_models,
    read_config,
    set_parameter,
    uses_openvino,
    version_dirs,
    write_config,
)

log = logging.getLogger(__name__)
PB_MODEL_SOURCE = Path(__file__).with_name("pb_model.py")
RUNTIME_PARAM = "harness_runtime"
MODEL_FILE_PARAM = "harness_model_file"


# The fields python_config_for() replaces on purpose, and why; every other field is carried over
# unchanged (tests/unit/test_materialize_roundtrip.py walks the ModelConfig descriptor for that).
REPLACED_FIELDS: dict[str, str] = {
    "platform": "the stand-in is no ONNX Runtime model",
    "backend": "python: the only backend of the embedded tritonserver",
    "runtime": "it names the ONNX Runtime backend library, not the python backend's",
    "optimization": "the python backend has no execution accelerators (runtime: a parameter)",
    "default_model_filename": "for the python backend it names model.py; the ONNX file moves "
    f"to the {MODEL_FILE_PARAM} parameter",
    "cc_model_filenames": "per-GPU model files; the python backend would take them for model.py",
    "parameters": f"kept, plus {RUNTIME_PARAM} and {MODEL_FILE_PARAM} for pb_model.py",
}


def python_config_for(cfg: mc.ModelConfig) -> mc.ModelConfig:
    """The python-backend config standing in for an ONNX Runtime model config."""
    out = mc.ModelConfig()
    out.CopyFrom(cfg)
    out.ClearField("platform")
    out.ClearField("runtime")
    out.backend = "python"
    # The python backend has no execution accelerators; the runtime is picked by a parameter.
    out.ClearField("optimization")
    set_parameter(out, RUNTIME_PARAM, "openvino" if uses_openvino(cfg) else "onnxruntime")
    set_parameter(out, MODEL_FILE_PARAM, cfg.default_model_filename or "model.onnx")
    out.ClearField("default_model_filename")
    out.ClearField("cc_model_filenames")
    return out


def _link_or_copy(src: Path, dst: Path) -> None:
    # A symlink keeps it "the very same file" and costs nothing; copy where links are refused.
    try:
        os.symlink(src.resolve(), dst)
    except OSError:
        shutil.copy2(src, dst)


def _onnx_versions(cfg: mc.ModelConfig, src: Path) -> list[Path]:
    """The version folders of an ONNX model that hold its weights."""
    model_file = cfg.default_model_filename or "model.onnx"
    return [v for v in version_dirs(src) if (v / model_file).is_file()]


def _materialize_onnx(cfg: mc.ModelConfig, src: Path, dst: Path) -> None:
    """Write the python stand-in of one ONNX model (its weights exist: see _own_skip_reason)."""
    dst.mkdir(parents=True)
    for vdir in _onnx_versions(cfg, src):
        out = dst / vdir.name
        out.mkdir()
        for item in vdir.iterdir():
            if item.name.startswith("."):
                continue
            _link_or_copy(item, out / item.name)  # model.onnx plus any external-data files
        shutil.copyfile(PB_MODEL_SOURCE, out / "model.py")
    write_config(python_config_for(cfg), dst / CONFIG_NAME)


def _copy_as_is(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, symlinks=False, ignore=shutil.ignore_patterns("__pycache__"))
    for vdir in version_dirs(dst):  # Triton needs a version folder even for ensembles
        vdir.mkdir(exist_ok=True)


def skip_reason(cfg: mc.ModelConfig) -> str | None:
    """Why the embedded server cannot serve a model of this kind (None: it can)."""
    if is_tensorrt(cfg):
        return "TensorRT needs an NVIDIA GPU (and NVIDIA's container)"
    if is_onnx(cfg) or is_python(cfg) or is_ensemble(cfg):
        return None
    kind = cfg.platform or cfg.backend
    return f"no '{kind}' backend in the embedded tritonserver (only python)"


def ensemble_members(cfg: mc.ModelConfig) -> list[str]:
    """The models an ensemble's steps call, in step order, each once."""
    return list(dict.fromkeys(step.model_name for step in cfg.ensemble_scheduling.step))


def _own_skip_reason(cfg: mc.ModelConfig, src: Path) -> str | None:
    """Why this model cannot be served here on its own (members not considered)."""
    reason = skip_reason(cfg)
    if reason is None and is_onnx(cfg) and not _onnx_versions(cfg, src):
        model_file = cfg.default_model_filename or "model.onnx"
        reason = f"no version folder holds {model_file} (export the model first)"
    return reason


class _Plan:
    """Which models to write and why the others are skipped, members before their ensembles."""

    def __init__(self, src_repo: Path, available: list[str]) -> None:
        self.src_repo = src_repo
        self.available = set(available)
        self.configs: dict[str, mc.ModelConfig] = {}
        self.reasons: dict[str, str | None] = {}
        self.order: list[str] = []

    def visit(self, name: str, chain: tuple[str, ...] = ()) -> str | None:
        """Add `name` (after its members) to the order; return why it is skipped, or None."""
        if name in self.reasons:
            return self.reasons[name]
        if name in chain:
            return "ensemble cycle " + " -> ".join((*chain[chain.index(name) :], name))
        src = self.src_repo / name
        cfg = self.configs[name] = check_config(read_config(src), src)
        reason = _own_skip_reason(cfg, src)
        if reason is None and is_ensemble(cfg):
            for member in ensemble_members(cfg):
                if member not in self.available:
                    reason = f"member {member} is not in {self.src_repo}"
                    break
                why = self.visit(member, (*chain, name))
                if why is not None:
                    reason = f"member {member} cannot be served here: {why}"
                    break
        self.reasons[name] = reason
        self.order.append(name)
        return reason


def materialize(
    src_repo: Path,
    dst_dir: Path,
    models: list[str] | None = None,
    skipped: dict[str, str] | None = None,
) -> list[str]:
    """Write a repository the embedded tritonserver can serve; return the materialized names.

    `models=None` takes every model of `src_repo`; the members of a chosen ensemble come with
    it. A model that cannot be served here (TensorRT, no weights yet, unknown backend, an
    ensemble with such a member) is skipped with the reason logged (and put in `skipped`, when
    given); an unknown name raises.
    """
    src_repo, dst_dir = Path(src_repo), Path(dst_dir)
    available = list_models(src_repo)
    if models is not None:
        unknown = [m for m in models if m not in available]
        if unknown:
            raise HarnessError(
                f"model(s) {', '.join(unknown)} not in {src_repo} (has: {', '.join(available)})"
            )
    wanted = list(available if models is None else models)
    if src_repo.resolve() == dst_dir.resolve():
        raise HarnessError("refusing to materialize a repository onto itself")
    plan = _Plan(src_repo, available)
    for name in wanted:
        plan.visit(name)
    dst_dir.mkdir(parents=True, exist_ok=True)
    done: list[str] = []
    for name in plan.order:
        src, cfg, reason = src_repo / name, plan.configs[name], plan.reasons[name]
        dst = dst_dir / name
        if dst.exists() or dst.is_symlink():
            shutil.rmtree(dst) if dst.is_dir() and not dst.is_symlink() else dst.unlink()
        if reason is not None:
            log.warning("skipped %s: %s", name, reason)
            if skipped is not None:
                skipped[name] = reason
            continue
        if is_onnx(cfg):
            _materialize_onnx(cfg, src, dst)
            runtime = get_parameter(python_config_for(cfg), RUNTIME_PARAM)
            log.info("materialized %s: onnx -> python backend (%s)", name, runtime)
        else:
            _copy_as_is(src, dst)
            log.info("materialized %s: copied as-is (%s)", name, cfg.platform or cfg.backend)
        done.append(name)
    return done
