"""Conversions: every CPU format really converted, checked independently, and cached."""

import json

import numpy as np
import onnx
import pytest

from harness.embeddings.convert import convert_formats, parity_batch, repo_model_file
from harness.embeddings.fixtures_gen import fixture
from harness.embeddings.runtime import openvino_runner, ort_runner

pytestmark = pytest.mark.integration


def _ops(path):
    return {n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}


def test_onnx_matches_pytorch_on_dynamic_shapes(embed_cfg, embed_conversions):
    """Independent of the converter's own check: fresh torch model, other batch/seq shapes."""
    from harness.embeddings.model import build_wrapper, model_path, torch_embed

    path = repo_model_file(embed_cfg, "onnx")
    model = onnx.load(str(path), load_external_data=False)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    wrapper = build_wrapper(model_path(embed_cfg.embed.model.package))
    run = ort_runner(path)
    full = parity_batch(embed_cfg)
    for rows, seq in [(1, 5), (3, 40), (len(full["input_ids"]), full["input_ids"].shape[1])]:
        batch = {k: v[:rows, :seq].copy() for k, v in full.items()}
        got, want = run(batch), torch_embed(wrapper, batch)
        assert got.shape == (rows, embed_cfg.embed.model.dim)
        assert np.abs(got - want).max() <= embed_cfg.embed.convert.parity_atol


def test_openvino_runtime_matches_onnxruntime(embed_cfg, embed_conversions):
    batch = parity_batch(embed_cfg)
    path = repo_model_file(embed_cfg, "openvino")
    diff = np.abs(openvino_runner(path)(batch) - ort_runner(path)(batch)).max()
    assert diff <= embed_cfg.embed.convert.openvino_atol


def test_fp16_has_fp16_weights_and_fp32_io(embed_cfg, embed_conversions):
    model = onnx.load(str(repo_model_file(embed_cfg, "fp16")))
    types = {i.data_type for i in model.graph.initializer}
    assert onnx.TensorProto.FLOAT16 in types
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == [onnx.TensorProto.INT64] * 2
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_int8_static_is_really_calibrated(embed_cfg, embed_conversions):
    """Static int8: fixed activation scales (no per-batch DynamicQuantizeLinear), int8 kernels."""
    ops = _ops(repo_model_file(embed_cfg, "int8"))
    assert ops & {"QLinearMatMul", "QuantizeLinear"}
    assert "DynamicQuantizeLinear" not in ops
    checks = embed_conversions["int8"].checks
    n_cal = len(
        [
            ln
            for ln in fixture(embed_cfg, "calibration.txt").read_text().splitlines()
            if ln.strip() and not ln.startswith("#")
        ]
    )
    assert checks["calibration_sentences"] == n_cal
    dyn = _ops(repo_model_file(embed_cfg, "int8-dynamic"))
    assert "DynamicQuantizeLinear" in dyn or "MatMulInteger" in dyn


def test_second_conversion_comes_from_the_cache(embed_cfg, embed_formats, embed_conversions):
    before = {f: repo_model_file(embed_cfg, f).stat().st_mtime_ns for f in embed_formats}
    again = convert_formats(embed_cfg, embed_formats)
    assert all(r.cached for r in again)
    after = {f: repo_model_file(embed_cfg, f).stat().st_mtime_ns for f in embed_formats}
    assert before == after  # identical files are not rewritten


def test_oracle_reproduces_the_golden_embeddings(embed_cfg):
    from harness.embeddings.model import model_path
    from harness.embeddings.oracle import oracle_embed

    doc = json.loads(fixture(embed_cfg, embed_cfg.embed.compare.golden_file).read_text())
    got = oracle_embed(str(model_path(embed_cfg.embed.model.package)), doc["sentences"])
    assert np.abs(got - np.array(doc["embeddings"])).max() <= 1e-5


@pytest.mark.gpu
@pytest.mark.parametrize("fmt", ["trt-fp32", "trt-fp16", "trt-int8"])
def test_tensorrt_plans(embed_cfg, fmt):
    from harness.embeddings.tensorrt import tensorrt_unavailable

    reason = tensorrt_unavailable()
    if reason:
        pytest.skip(reason)
    (result,) = convert_formats(embed_cfg, [fmt])
    assert result.path is not None and result.path.stat().st_size > 0
