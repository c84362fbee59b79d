"""Conversions of MiniLM: ONNX fp32, OpenVINO, fp16, static/dynamic int8, TensorRT (GPU).

Each conversion is reproducible and cached under `embed.cache_dir` by a hash of its inputs (model
files, configuration, calibration set, tool versions and this code), so repeated runs only copy
the cached file into the canonical model repository.
"""

from __future__ import annotations

import logging
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from harness.embeddings.cache import ConversionCache, file_sha256, install, key_of
from harness.embeddings.fixtures_gen import fixture, read_sentences
from harness.embeddings.model import (
    build_wrapper,
    load_tokenizer,
    model_path,
    tokenize,
    torch_embed,
)
from harness.errors import HarnessError
from harness.paths import resolve

log = logging.getLogger(__name__)
CODE_VERSION = 3  # bump when a conversion's behaviour changes without a config change
MODEL_FILES = ("config.json", "model.safetensors")


@dataclass
class ConversionResult:
    """What one format's conversion produced and how it was checked."""

    format: str
    model: str
    path: Path | None
    cached: bool = False
    seconds: float = 0.0
    checks: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None
    build_seconds: float = 0.0  # how long the conversion itself took (when it was not cached)


def _versions(*names: str) -> dict[str, str]:
    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = "missing"
    return out


def format_cfg(cfg: DictConfig, fmt: str) -> DictConfig:
    """The `embed.formats.<fmt>` entry, or a one-line error naming the known formats."""
    if fmt not in cfg.embed.formats:
        known = ", ".join(cfg.embed.formats)
        raise HarnessError(f"unknown embedding format {fmt!r} (known: {known})")
    return cfg.embed.formats[fmt]


def repo_model_file(cfg: DictConfig, fmt: str) -> Path:
    """Where format `fmt`'s weights live in the canonical model repository."""
    f = format_cfg(cfg, fmt)
    name = "model.plan" if f.kind == "tensorrt" else "model.onnx"
    return resolve(cfg.embed.repository) / f.model / "1" / name


def parity_batch(cfg: DictConfig) -> dict[str, np.ndarray]:
    """Tokenized fixture sentences used by the parity checks (incl. one truncated long text)."""
    sents = read_sentences(fixture(cfg, cfg.embed.compare.sentences_file))
    n = int(cfg.embed.convert.parity_sentences)
    chosen = sents[: n - 1] + [max(sents, key=len)]
    tok = load_tokenizer(str(model_path(cfg.embed.model.package)))
    return tokenize(tok, chosen, int(cfg.embed.model.max_length))


class Converter:
    """Runs (or reuses from the cache) the conversion of each requested format."""

    def __init__(self, cfg: DictConfig, force: bool = False) -> None:
        self.cfg = cfg
        self.ecfg = cfg.embed
        self.force = force
        self.cache = ConversionCache(resolve(self.ecfg.cache_dir))
        self.mpath = model_path(self.ecfg.model.package)
        self._keys: dict[str, str] = {}

    # ---- keys -------------------------------------------------------------------------------
    def _section(self, name: str) -> Any:
        return OmegaConf.to_container(self.ecfg.convert[name], resolve=True)

    def key(self, fmt: str) -> str:
        """Cache key of a format: hash of its inputs (and of the fp32 ONNX it derives from)."""
        if fmt in self._keys:
            return self._keys[fmt]
        base: dict[str, Any] = {"code": CODE_VERSION, "format": fmt}
        if fmt == "onnx":
            base |= {
                "model": {f: file_sha256(self.mpath / f) for f in MODEL_FILES},
                "io": OmegaConf.to_container(self.ecfg.model, resolve=True),
                "atol": self.ecfg.convert.parity_atol,
                "versions": _versions("torch", "transformers", "onnx"),
            }
        else:
            base["onnx"] = self.key("onnx")
            if fmt == "openvino":
                base |= {"v": _versions("openvino"), "atol": self.ecfg.convert.openvino_atol}
            elif fmt == "fp16":
                base |= {"cfg": self._section("fp16"), "v": _versions("onnxruntime")}
            elif fmt in ("int8", "int8-openvino"):
                cal = fixture(self.cfg, self.ecfg.convert.int8.calibration_file)
                base |= {
                    "cfg": self._section("int8"),
                    "fmt": OmegaConf.to_container(format_cfg(self.cfg, fmt), resolve=True),
                    "calibration": file_sha256(cal),
                    "v": _versions("onnxruntime"),
                }
            elif fmt == "int8-dynamic":
                base |= {"cfg": self._section("int8_dynamic"), "v": _versions("onnxruntime")}
            elif fmt.startswith("trt-"):
                cal = fixture(self.cfg, self.ecfg.convert.int8.calibration_file)
                base |= {
                    "cfg": self._section("tensorrt"),
                    "calibration": file_sha256(cal),
                    "v": _versions("tensorrt"),
                }
        self._keys[fmt] = key_of(base)
        return self._keys[fmt]

    # ---- orchestration ----------------------------------------------------------------------
    def artefact(self, fmt: str) -> tuple[Path, bool, dict[str, Any]]:
        """The cached artefact of `fmt` (converting it first when missing): path, cached, meta."""
        f = format_cfg(self.cfg, fmt)
        filename = "model.plan" if f.kind == "tensorrt" else "model.onnx"
        key = self.key(fmt)
        hit = None if self.force else self.cache.lookup(fmt, key, filename)
        if hit is not None:
            return hit[0], True, hit[1]
        # Another process (a second test worker, a demo next to the tests) may be building the
        # same entry: the first to take the lock converts, the others then find it in the cache.
        with self.cache.building(fmt):
            if not self.force and (hit := self.cache.lookup(fmt, key, filename)) is not None:
                return hit[0], True, hit[1]
            with tempfile.TemporaryDirectory(dir=self.cache.root) as tmp:
                out = Path(tmp) / filename
                t0 = time.perf_counter()
                checks = self._convert(fmt, out)
                meta = {"format": fmt, "checks": checks, "seconds": time.perf_counter() - t0}
                art = self.cache.store(fmt, key, out, filename, meta)
            return art, False, self.cache.lookup(fmt, key, filename)[1]  # type: ignore[index]

    def convert(self, fmt: str) -> ConversionResult:
        """Convert one format (or take it from the cache) and install it in the repository."""
        f = format_cfg(self.cfg, fmt)
        t0 = time.perf_counter()
        if f.kind == "tensorrt":
            from harness.embeddings.tensorrt import tensorrt_unavailable

            reason = tensorrt_unavailable()
            if reason:
                return ConversionResult(fmt, f.model, None, skipped=reason)
        art, cached, meta = self.artefact(fmt)
        dst = repo_model_file(self.cfg, fmt)
        install(art, dst)
        return ConversionResult(
            fmt,
            f.model,
            dst,
            cached,
            time.perf_counter() - t0,
            dict(meta.get("checks", {})),
            build_seconds=float(meta.get("seconds", 0.0)),
        )

    def _convert(self, fmt: str, out: Path) -> dict[str, Any]:
        if fmt == "onnx":
            return export_onnx(self.cfg, self.mpath, out)
        src, _, _ = self.artefact("onnx")
        if fmt == "openvino":
            return to_openvino(self.cfg, src, out)
        if fmt == "fp16":
            return to_fp16(self.cfg, src, out)
        if fmt == "int8":
            return to_int8_static(self.cfg, src, out)
        if fmt == "int8-openvino":
            f = format_cfg(self.cfg, fmt)
            checks = to_int8_static(self.cfg, src, out, quant_format=f.get("quant_format"))
            from harness.embeddings.runtime import openvino_runner

            batch = parity_batch(self.cfg)
            a, b = openvino_runner(out)(batch), openvino_runner(src)(batch)
            checks["openvino_min_cosine_vs_fp32"] = float(np.sum(a * b, axis=1).min())
            return checks
        if fmt == "int8-dynamic":
            return to_int8_dynamic(self.cfg, src, out)
        if fmt.startswith("trt-"):
            from harness.embeddings.tensorrt import build_engine

            return build_engine(self.cfg, src, out, precision=format_cfg(self.cfg, fmt).precision)
        raise HarnessError(f"no conversion for format {fmt!r}")


def convert_formats(
    cfg: DictConfig, formats: list[str] | None = None, force: bool = False
) -> list[ConversionResult]:
    """Convert `formats` (default: embed.default_formats) and install them in the repository."""
    formats = list(formats or cfg.embed.default_formats)
    for fmt in formats:
        format_cfg(cfg, fmt)  # fail on a bad name before any work
    conv = Converter(cfg, force=force)
    return [conv.convert(fmt) for fmt in formats]


# ---- the conversions ------------------------------------------------------------------------
def export_onnx(cfg: DictConfig, mpath: Path, out: Path) -> dict[str, Any]:
    """Export the wrapper to ONNX (dynamic batch and sequence) and check it against PyTorch."""
    import torch

    m = cfg.embed.model
    wrapper = build_wrapper(mpath)
    batch = parity_batch(cfg)
    example = tuple(torch.from_numpy(batch[n][:2]) for n in ("input_ids", "attention_mask"))
    axes = {n: {0: "batch", 1: "sequence"} for n in m.input_names}
    axes[m.output_name] = {0: "batch"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            example,
            str(out),
            input_names=list(m.input_names),
            output_names=[m.output_name],
            dynamic_axes=axes,
            opset_version=int(m.opset),
            dynamo=False,  # the TorchScript exporter gives plain ops all runtimes accept
        )
    from harness.embeddings.runtime import ort_runner

    got = ort_runner(out)(batch)
    want = torch_embed(wrapper, batch)
    diff = float(np.abs(got - want).max())
    if not diff <= float(cfg.embed.convert.parity_atol):
        raise HarnessError(
            f"ONNX export differs from PyTorch by {diff:.3g} > {cfg.embed.convert.parity_atol}"
        )
    return {"max_abs_vs_torch": diff, "opset": int(m.opset)}


def to_openvino(cfg: DictConfig, src: Path, out: Path) -> dict[str, Any]:
    """The same ONNX file for the OpenVINO accelerator, checked with the OpenVINO runtime."""
    import shutil

    from harness.embeddings.runtime import openvino_runner, ort_runner

    shutil.copyfile(src, out)
    batch = parity_batch(cfg)
    diff = float(np.abs(openvino_runner(out)(batch) - ort_runner(src)(batch)).max())
    if not diff <= float(cfg.embed.convert.openvino_atol):
        raise HarnessError(f"OpenVINO differs from ONNX Runtime by {diff:.3g}")
    return {"max_abs_vs_onnxruntime": diff}


def _check_vs_fp32(cfg: DictConfig, src: Path, out: Path) -> dict[str, Any]:
    from harness.embeddings.runtime import ort_runner

    batch = parity_batch(cfg)
    a, b = ort_runner(out)(batch), ort_runner(src)(batch)
    cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return {
        "mean_norm_diff_vs_fp32": float(np.linalg.norm(a - b, axis=1).mean()),
        "min_cosine_vs_fp32": float(cos.min()),
    }


def to_fp16(cfg: DictConfig, src: Path, out: Path) -> dict[str, Any]:
    """fp16 weights and compute (ONNX Runtime's converter); ids in, float32 embeddings out."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    c = cfg.embed.convert.fp16
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one warning per tiny weight clipped to fp16 range
        model = convert_float_to_float16(
            onnx.load(str(src)),
            keep_io_types=bool(c.keep_io_types),
            op_block_list=list(c.op_block_list) or None,
        )
    onnx.save(model, str(out))
    return _check_vs_fp32(cfg, src, out)


class CalibrationReader:
    """Feeds tokenized calibration sentences to ONNX Runtime's static calibrator."""

    def __init__(self, cfg: DictConfig) -> None:
        c = cfg.embed.convert.int8
        sents = read_sentences(fixture(cfg, c.calibration_file))
        tok = load_tokenizer(str(model_path(cfg.embed.model.package)))
        bs, length = int(c.calibration_batch), int(c.calibration_max_length)
        # histogram calibrators stack all batches: they need one fixed sequence length
        pad_to = length if c.calibrate_method != "MinMax" else None
        self.batches = [
            tokenize(tok, sents[i : i + bs], length, pad_to=pad_to)
            for i in range(0, len(sents), bs)
        ]
        self.n_sentences = len(sents)
        self._it = iter(self.batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        """Next calibration batch, None when exhausted (the CalibrationDataReader protocol)."""
        return next(self._it, None)

    def rewind(self) -> None:
        """Start again from the first batch."""
        self._it = iter(self.batches)


def _quant_enum(name: str) -> Any:
    from onnxruntime import quantization as q

    for enum in (q.QuantType, q.QuantFormat, q.CalibrationMethod):
        if hasattr(enum, name):
            return getattr(enum, name)
    raise HarnessError(f"unknown quantization setting {name!r}")


def excluded_nodes(model_path: Path, c: DictConfig, patterns_only: bool = False) -> list[str]:
    """Nodes kept in float: listed, matching a pattern, or activation x activation MatMuls."""
    import re

    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    inits = {i.name for i in graph.initializer}
    pats = [re.compile(p) for p in c.get("exclude_patterns", [])]
    out = [] if patterns_only else list(c.get("nodes_to_exclude", []))
    for node in graph.node:
        if any(p.search(node.name) for p in pats):
            out.append(node.name)
        elif (
            not patterns_only
            and c.get("exclude_activation_matmuls", False)
            and node.op_type == "MatMul"
            and not any(i in inits for i in node.input)
        ):
            out.append(node.name)
    return sorted(set(out))


def to_int8_static(
    cfg: DictConfig, src: Path, out: Path, quant_format: str | None = None
) -> dict[str, Any]:
    """Static int8: activation ranges calibrated on the committed calibration set."""
    from onnxruntime.quantization import quantize_dynamic, quantize_static

    c = cfg.embed.convert.int8
    reader = CalibrationReader(cfg)
    exclude = excluded_nodes(src, c)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_static(
            str(src),
            str(out),
            calibration_data_reader=reader,
            quant_format=_quant_enum(quant_format or c.quant_format),
            op_types_to_quantize=list(c.op_types_to_quantize) or None,
            per_channel=bool(c.per_channel),
            reduce_range=bool(c.reduce_range),
            activation_type=_quant_enum(c.activation_type),
            weight_type=_quant_enum(c.weight_type),
            nodes_to_exclude=exclude or None,
            calibrate_method=_quant_enum(c.calibrate_method),
            extra_options={"CalibPercentile": float(c.percentile)},
            calibration_providers=["CPUExecutionProvider"],
        )
    if c.get("excluded_dynamic", False):
        # The outlier-heavy layers kept out of static int8 still get int8 weights, with their
        # activation range measured per batch at run time instead of fixed by calibration.
        names = sorted(set(excluded_nodes(src, c, patterns_only=True)))
        static = out.with_name("static_" + out.name)
        out.rename(static)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(
                str(static),
                str(out),
                op_types_to_quantize=["MatMul"],
                nodes_to_quantize=names,
                per_channel=bool(c.per_channel),
                weight_type=_quant_enum(c.weight_type),
            )
        static.unlink()
    checks = _check_vs_fp32(cfg, src, out)
    checks["calibration_sentences"] = reader.n_sentences
    checks["float_nodes"] = len(exclude)
    return checks


def to_int8_dynamic(cfg: DictConfig, src: Path, out: Path) -> dict[str, Any]:
    """Dynamic int8 (weights quantized offline, activations per batch): the extra format."""
    from onnxruntime.quantization import quantize_dynamic

    c = cfg.embed.convert.int8_dynamic
    exclude = excluded_nodes(src, c)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(
            str(src),
            str(out),
            op_types_to_quantize=list(c.op_types_to_quantize) or None,
            per_channel=bool(c.per_channel),
            reduce_range=bool(c.reduce_range),
            weight_type=_quant_enum(c.weight_type),
            nodes_to_exclude=exclude or None,
        )
    return _check_vs_fp32(cfg, src, out)
