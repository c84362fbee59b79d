"""Export the digit classifier to ONNX: named input/output, dynamic batch, parity-checked."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from harness.errors import HarnessError
from harness.io import atomic_path
from harness.paths import resolve

log = logging.getLogger(__name__)


def parity_inputs(cfg: DictConfig) -> np.ndarray:
    """Fixed inputs for the parity check: seeded uniform noise plus all-black and all-white."""
    n, size = cfg.export.parity_samples, cfg.model.image_size
    rng = np.random.default_rng(cfg.export.parity_seed)
    x = rng.random((n, cfg.model.in_channels, size, size), dtype=np.float32)
    x[0], x[-1] = 0.0, 1.0
    return x


def onnx_session(path: str | Path, threads: int = 1):
    """An onnxruntime CPU session for `path` (one thread: robust on shared cores)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def check_parity(
    cfg: DictConfig, model: torch.nn.Module, path: str | Path, x: np.ndarray | None = None
) -> float:
    """Max |onnxruntime - torch| on fixed inputs; HarnessError when above export.parity_atol."""
    x = parity_inputs(cfg) if x is None else x
    model.eval()
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    sess = onnx_session(path)
    got = sess.run([cfg.export.output_name], {cfg.export.input_name: x})[0]
    if got.shape != ref.shape:
        raise HarnessError(f"ONNX parity failed for {path}: shape {got.shape} != {ref.shape}")
    diff = float(np.max(np.abs(got - ref)))
    if not diff <= cfg.export.parity_atol:
        raise HarnessError(
            f"ONNX parity failed for {path}: max abs diff {diff:.3g} > {cfg.export.parity_atol}"
        )
    return diff


def export_onnx(cfg: DictConfig, model: torch.nn.Module, path: str | Path | None = None) -> Path:
    """Export `model` to export.path (or `path`) atomically after a passing parity check."""
    ec = cfg.export
    if ec.opset < 17:
        raise HarnessError(f"export.opset {ec.opset} < 17 is not supported")
    target = resolve(path if path is not None else ec.path)
    model = model.eval()
    size = cfg.model.image_size
    dummy = torch.zeros(2, cfg.model.in_channels, size, size)
    with atomic_path(target) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporters are chatty about deprecations
            if ec.exporter == "torchscript":
                axes = {ec.input_name: {0: "batch"}, ec.output_name: {0: "batch"}}
                extra = {"dynamo": False, "dynamic_axes": axes if ec.dynamic_batch else None}
            elif ec.exporter == "dynamo":
                shapes = {"x": {0: torch.export.Dim("batch")}} if ec.dynamic_batch else None
                extra = {"dynamo": True, "external_data": False, "dynamic_shapes": shapes}
            else:
                raise HarnessError(f"unknown export.exporter '{ec.exporter}' (torchscript, dynamo)")
            torch.onnx.export(
                model,
                (dummy,),
                str(tmp),
                input_names=[ec.input_name],
                output_names=[ec.output_name],
                opset_version=ec.opset,
                **extra,
            )
        import onnx

        onnx.checker.check_model(str(tmp))
        diff = check_parity(cfg, model, tmp)
        tmp.chmod(0o644)
    log.info("exported %s (opset %d, parity max abs diff %.2g)", target, ec.opset, diff)
    return target
