"""In-process runners for the converted files: ONNX Runtime, OpenVINO (and TensorRT on a GPU)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from harness.errors import HarnessError

Runner = Callable[[dict[str, np.ndarray]], np.ndarray]


def ort_runner(path: str | os.PathLike[str], threads: int = 0) -> Runner:
    """ONNX Runtime CPU session on `path`: batch dict -> float32 embeddings."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]

    def run(batch: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(sess.run(None, {n: batch[n] for n in names})[0], dtype=np.float32)

    return run


def openvino_runner(path: str | os.PathLike[str], precision: str = "f32") -> Runner:
    """OpenVINO CPU runtime compiling the same ONNX file: batch dict -> float32 embeddings."""
    import openvino as ov

    core = ov.Core()
    # OpenVINO defaults to bf16 compute on CPUs with AVX512-BF16 (this one): ~1e-3 off fp32.
    compiled = core.compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": precision})
    request = compiled.create_infer_request()
    names = [p.get_any_name() for p in compiled.inputs]

    def run(batch: dict[str, np.ndarray]) -> np.ndarray:
        result = request.infer({n: batch[n] for n in names})
        return np.asarray(result[compiled.outputs[0]], dtype=np.float32).copy()

    return run


def make_runner(runtime: str, path: str | os.PathLike[str]) -> Runner:
    """A runner for `runtime` (onnxruntime | openvino | tensorrt) on the file at `path`."""
    if not Path(path).is_file():
        raise HarnessError(f"{path} does not exist: run `harness convert` first")
    if runtime == "onnxruntime":
        return ort_runner(path)
    if runtime == "openvino":
        return openvino_runner(path)
    if runtime == "tensorrt":
        from harness.embeddings.tensorrt import trt_runner

        return trt_runner(path)
    raise HarnessError(f"unknown runtime {runtime!r} (onnxruntime, openvino, tensorrt)")


def run_batched(runner: Runner, batch: dict[str, np.ndarray], batch_size: int) -> np.ndarray:
    """Run `runner` over `batch` in chunks of `batch_size` rows."""
    n = len(batch["input_ids"])
    parts = [
        runner({k: v[i : i + batch_size] for k, v in batch.items()})
        for i in range(0, n, batch_size)
    ]
    return np.concatenate(parts, axis=0)
