"""TensorRT plans (fp32 / fp16 / int8) built with the `tensorrt` Python builder API.

GPU only: nothing here runs on the CPU build machines, and the tests that use it are marked
`gpu` and skip with the reason. int8 uses an entropy calibrator fed with the committed
calibration sentences; every plan gets one optimization profile over batch and sequence length.
Untested until it runs on a machine with an NVIDIA GPU.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from harness.errors import HarnessError


def tensorrt_unavailable() -> str | None:
    """Why TensorRT cannot run here (None when the module and a CUDA GPU are present)."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "TensorRT needs an NVIDIA GPU and the `tensorrt` package (neither is here)"
    try:
        import torch

        if not torch.cuda.is_available():
            return "no CUDA GPU visible (TensorRT plans are built on the GPU they run on)"
    except ImportError:
        return "torch with CUDA is needed to move calibration batches to the GPU"
    return None


def _calibrator(cfg: DictConfig, cache_file: Path) -> Any:
    """An IInt8EntropyCalibrator2 over the calibration sentences (fixed batch x seq)."""
    import tensorrt as trt
    import torch

    from harness.embeddings.fixtures_gen import fixture, read_sentences
    from harness.embeddings.model import load_tokenizer, model_path, tokenize

    c = cfg.embed.convert.tensorrt
    bs, seq = int(c.calibration_batch), int(c.calibration_seq)
    sents = read_sentences(fixture(cfg, cfg.embed.convert.int8.calibration_file))
    tok = load_tokenizer(str(model_path(cfg.embed.model.package)))
    batches = [
        tokenize(tok, sents[i : i + bs], seq, pad_to=seq) for i in range(0, len(sents) - bs + 1, bs)
    ]

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        """Feeds real token batches; the cache lets a rebuild skip calibration."""

        def __init__(self) -> None:
            super().__init__()
            self.index = 0
            self.device: dict[str, Any] = {}

        def get_batch_size(self) -> int:
            return bs

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.index >= len(batches):
                return None
            batch = batches[self.index]
            self.index += 1
            self.device = {n: torch.from_numpy(batch[n]).cuda() for n in names}
            return [int(self.device[n].data_ptr()) for n in names]

        def read_calibration_cache(self) -> bytes | None:
            return cache_file.read_bytes() if cache_file.is_file() else None

        def write_calibration_cache(self, cache: bytes) -> None:
            cache_file.write_bytes(cache)

    return EntropyCalibrator()


def build_engine(cfg: DictConfig, onnx_path: Path, out: Path, precision: str) -> dict[str, Any]:
    """Parse the ONNX file, build a serialized plan at `precision` with one profile, write it."""
    import tensorrt as trt

    c = cfg.embed.convert.tensorrt
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise HarnessError(f"TensorRT cannot parse {onnx_path}: {errors[:1]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(c.workspace_mib) << 20)
    profile = builder.create_optimization_profile()
    (b0, b1, b2), (s0, s1, s2) = c.profile.batch, c.profile.seq
    for name in cfg.embed.model.input_names:
        profile.set_shape(name, (b0, s0), (b1, s1), (b2, s2))
    config.add_optimization_profile(profile)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "int8":
        # fp16 as well: layers TensorRT cannot run in int8 fall back to fp16, not fp32
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_calibration_profile(profile)
        config.int8_calibrator = _calibrator(cfg, out.with_suffix(".calib"))
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise HarnessError(f"TensorRT failed to build the {precision} plan (see its log)")
    out.write_bytes(bytes(plan))
    return {
        "precision": precision,
        "profile_batch": list(c.profile.batch),
        "profile_seq": list(c.profile.seq),
        "plan_bytes": os.path.getsize(out),
    }


def trt_runner(path: str | os.PathLike[str]) -> Any:
    """Run a plan on the GPU: batch dict -> float32 embeddings (torch CUDA buffers)."""
    reason = tensorrt_unavailable()
    if reason:
        raise HarnessError(reason)
    import tensorrt as trt
    import torch

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(Path(path).read_bytes())
    context = engine.create_execution_context()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    output = next(n for n in names if n not in inputs)

    def run(batch: dict[str, np.ndarray]) -> np.ndarray:
        dev = {n: torch.from_numpy(batch[n]).cuda() for n in inputs}
        for n in inputs:
            context.set_input_shape(n, tuple(dev[n].shape))
            context.set_tensor_address(n, dev[n].data_ptr())
        out = torch.empty(tuple(context.get_tensor_shape(output)), device="cuda")
        context.set_tensor_address(output, out.data_ptr())
        stream = torch.cuda.current_stream()
        context.execute_async_v3(stream.cuda_stream)
        stream.synchronize()
        return out.cpu().numpy().astype(np.float32)

    return run
