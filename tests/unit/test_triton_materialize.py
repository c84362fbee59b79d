"""The materializer: every model kind, the canonical repository untouched, clear skips."""

from __future__ import annotations

import logging

import pytest

from harness.errors import HarnessError
from harness.serving.materialize import materialize
from harness.serving.repository import read_config
from harness.testing.triton_repos import build_variety_repository


def _snapshot(root):
    return {
        str(p.relative_to(root)): (p.is_symlink(), p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture
def canonical(tmp_path):
    return build_variety_repository(tmp_path / "canonical")


def test_onnx_models_become_python_models_with_the_same_interface(canonical, tmp_path):
    out = tmp_path / "out"
    names = materialize(canonical, out)
    assert sorted(names) == ["echo", "mnist-ensemble", "mnist-openvino", "multi"]
    src, dst = read_config(canonical / "multi"), read_config(out / "multi")
    assert dst.backend == "python" and not dst.platform
    assert list(dst.input) == list(src.input) and list(dst.output) == list(src.output)
    assert dst.max_batch_size == src.max_batch_size
    assert dst.dynamic_batching == src.dynamic_batching
    assert list(dst.instance_group) == list(src.instance_group)
    assert dst.parameters["intra_op_thread_count"].string_value == "1"
    assert dst.parameters["harness_runtime"].string_value == "onnxruntime"
    # The very same ONNX file (a link, not a copy) next to the generated model.py.
    link = out / "multi" / "1" / "model.onnx"
    assert link.is_symlink() and link.resolve() == (canonical / "multi" / "1" / "model.onnx")
    assert "TritonPythonModel" in (out / "multi" / "1" / "model.py").read_text()


def test_openvino_accelerator_selects_the_openvino_runtime(canonical, tmp_path):
    materialize(canonical, tmp_path / "out", ["mnist-openvino"])
    cfg = read_config(tmp_path / "out" / "mnist-openvino")
    assert cfg.parameters["harness_runtime"].string_value == "openvino"
    assert not cfg.HasField("optimization")


def test_python_models_and_ensembles_are_copied_as_is(canonical, tmp_path):
    materialize(canonical, tmp_path / "out", ["echo", "mnist-ensemble"])
    for name in ("echo", "mnist-ensemble"):
        assert (tmp_path / "out" / name / "config.pbtxt").read_text() == (
            canonical / name / "config.pbtxt"
        ).read_text()
    assert (tmp_path / "out" / "echo" / "1" / "model.py").read_text() == (
        canonical / "echo" / "1" / "model.py"
    ).read_text()


def test_tensorrt_and_missing_weights_are_skipped_with_the_reason(canonical, tmp_path, caplog):
    (canonical / "multi" / "1" / "model.onnx").unlink()
    skipped: dict[str, str] = {}
    with caplog.at_level(logging.WARNING, logger="harness.serving.materialize"):
        names = materialize(canonical, tmp_path / "out", skipped=skipped)
    assert sorted(skipped) == ["mnist-trt", "multi"]
    assert "mnist-trt" not in names and "multi" not in names
    assert "skipped mnist-trt: TensorRT needs an NVIDIA GPU" in caplog.text
    assert "skipped multi: no version folder holds model.onnx" in caplog.text
    assert not (tmp_path / "out" / "mnist-trt").exists()


def test_canonical_repository_is_never_modified(canonical, tmp_path):
    before = _snapshot(canonical)
    materialize(canonical, tmp_path / "out")
    materialize(canonical, tmp_path / "out")  # again, over the previous output
    assert _snapshot(canonical) == before


def test_unknown_model_and_self_target_are_errors(canonical, tmp_path):
    with pytest.raises(HarnessError, match="not in"):
        materialize(canonical, tmp_path / "out", ["nope"])
    with pytest.raises(HarnessError, match="onto itself"):
        materialize(canonical, canonical)
