"""Validation on this CPU: roofline-predicted time vs measured PyTorch and onnxruntime time."""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from harness.roofline.models import ModelSpec, export_onnx


@dataclasses.dataclass
class Timing:
    """Measured forward time of one framework at one batch size (seconds)."""

    framework: str
    batch: int
    median: float
    best: float
    spread: float  # (max - min) / median over the repeats


def _time(fn: Callable[[], object], warmup: int, repeats: int) -> list[float]:
    """Wall times of `repeats` calls after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _summary(framework: str, batch: int, times: list[float]) -> Timing:
    """Median, best and relative spread of a list of times."""
    med = statistics.median(times)
    return Timing(framework, batch, med, min(times), (max(times) - min(times)) / med)


def measure(
    spec: ModelSpec,
    batches: Sequence[int],
    warmup: int,
    repeats: int,
    use_onnxruntime: bool,
    opset: int,
    threads: int,
) -> tuple[list[Timing], str | None]:
    """Time PyTorch (eager, no_grad, fp32) and onnxruntime (CPU EP) forwards per batch size.

    Returns the timings and, when onnxruntime could not be measured, the reason.
    """
    out: list[Timing] = []
    for b in batches:
        inputs = spec.make_inputs(b)
        with torch.no_grad():
            out.append(
                _summary("pytorch", b, _time(lambda: spec.module(**inputs), warmup, repeats))
            )
    if not use_onnxruntime:
        return out, "onnxruntime timing disabled (roofline.validate.onnxruntime=false)"
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="roofline-onnx-") as tmp:
        path = export_onnx(spec, Path(tmp) / f"{spec.name}.onnx", opset)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        for b in batches:
            feed = {k: v.numpy() for k, v in spec.make_inputs(b).items()}
            out.append(
                _summary("onnxruntime", b, _time(lambda: sess.run(None, feed), warmup, repeats))
            )
    return out, None
