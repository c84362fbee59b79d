"""The inference checks' library: tolerances, mismatch lines, references, targets, the runner."""

from __future__ import annotations

import numpy as np
import pytest

from harness.errors import HarnessError
from harness.verify import inference as vi
from harness.verify.runner import check_name, one_line

TABLE = {"FP32": {"atol": 1e-5, "rtol": 1e-5}, "exact": {"atol": 0, "rtol": 0}}
GOLDEN_ONNX = "fixtures/triton/model.onnx"


def test_tolerance_comes_from_the_datatype_and_flags_win():
    assert vi.tolerance_for("FP32", TABLE) == vi.Tolerance(1e-5, 1e-5)
    assert vi.tolerance_for("INT64", TABLE) == vi.Tolerance(0.0, 0.0)
    assert vi.tolerance_for("FP32", TABLE, atol=0.5) == vi.Tolerance(0.5, 1e-5)


def test_mismatch_names_the_first_differing_element_and_both_values():
    expected = np.zeros((3, 4), np.float32)
    served = expected.copy()
    assert vi.mismatch("logits", served, expected, vi.Tolerance(1e-5, 0)) is None
    served[1, 2], served[2, 0] = 0.25, 1.0
    line = vi.mismatch("logits", served, expected, vi.Tolerance(1e-5, 0))
    assert line.startswith("output 'logits'[1, 2] = 0.25, expected 0")
    assert "2 of 12 elements differ" in line and "\n" not in line


def test_mismatch_at_the_edge_of_the_tolerance():
    e = np.array([1.0, -2.0])
    tol = vi.Tolerance(1e-5, 1e-5)
    assert vi.mismatch("y", e + np.array([1.9e-5, 0]), e, tol) is None  # 1e-5 + 1e-5 * 1
    assert vi.mismatch("y", e + np.array([2.1e-5, 0]), e, tol) is not None


def test_mismatch_reports_shapes_nan_and_exact_types():
    assert "has shape [2]" in vi.mismatch("y", np.zeros(2), np.zeros(3), vi.Tolerance(1, 1))
    nan = np.array([np.nan])
    assert vi.mismatch("y", nan, nan, vi.Tolerance(0, 0)) is None
    assert vi.mismatch("y", np.array([1.0]), nan, vi.Tolerance(1, 1)) is not None
    ints = np.array([1, 2, 3])
    assert vi.mismatch("c", ints + [0, 0, 1], ints, vi.Tolerance(0, 0)).startswith("output 'c'[2]")


def test_onnx_reference_specs_and_oracle():
    ref = vi.load_onnx(GOLDEN_ONNX)
    assert [s.show() for s in ref.inputs] == ["images FP32 [-1, 1, 28, 28]"]
    assert [s.show() for s in ref.outputs] == ["logits FP32 [-1, 10]"]
    assert ref.batched and ref.has_oracle
    feed = vi.seeded_inputs(ref.inputs, 3, seed=0, dynamic_dim=4)
    assert feed["images"].shape == (3, 1, 28, 28) and feed["images"].dtype == np.float32
    out = ref.predict(feed)["logits"]
    assert out.shape == (3, 10)
    # seeded inputs are deterministic: the same seed gives the same rows
    again = vi.seeded_inputs(ref.inputs, 3, seed=0, dynamic_dim=4)
    np.testing.assert_array_equal(feed["images"], again["images"])


def test_onnx_reference_rejects_a_file_that_is_not_onnx(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(HarnessError, match="not a loadable ONNX model"):
        vi.load_onnx(bad)


def test_golden_round_trip_and_layout_errors(tmp_path):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    path = vi.write_golden(tmp_path / "g.npz", {"x": x}, {"y": x * 2})
    ref = vi.load_golden(path)
    assert [s.show() for s in ref.inputs] == ["x FP32 [-1, 4]"]
    assert not ref.has_oracle
    np.testing.assert_array_equal(ref.golden_outputs["y"], x * 2)
    with pytest.raises(HarnessError, match="answers only its own inputs"):
        ref.predict({"x": x})
    np.savez(tmp_path / "flat.npz", images=x)
    with pytest.raises(HarnessError, match="inputs/<input name>"):
        vi.load_golden(tmp_path / "flat.npz")
    (tmp_path / "junk.npz").write_text("junk")
    with pytest.raises(HarnessError, match="not a readable .npz"):
        vi.load_golden(tmp_path / "junk.npz")


def test_targets_file(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"")
    path = tmp_path / "targets.yaml"
    path.write_text(
        "defaults: {p99_ms: 25}\n"
        "targets:\n"
        "  - {name: a, url: 'h:1', model: m, onnx: m.onnx}\n"
        "  - {name: b, url: 'h:2', model: m, onnx: m.onnx, p99_ms: 5}\n"
    )
    a, b = vi.load_targets(path)
    assert a.onnx == str(tmp_path / "m.onnx") and a.p99_ms == 25 and b.p99_ms == 5
    path.write_text("targets:\n  - {url: 'h:1', model: m, onnx: x, colour: red}\n")
    with pytest.raises(HarnessError, match="unknown keys colour"):
        vi.load_targets(path)
    path.write_text("targets:\n  - {url: 'h:1', model: m}\n")
    with pytest.raises(HarnessError, match="needs a reference"):
        vi.load_targets(path)
    path.write_text(
        "targets:\n  - {url: 'h:1', model: m, onnx: x}\n  - {url: 'h:2', model: m, onnx: x}\n"
    )
    with pytest.raises(HarnessError, match="unique"):
        vi.load_targets(path)


def test_wire_error_classifies_client_errors():
    assert vi.WireError("400", "bad").client_error
    assert vi.WireError("INVALID_ARGUMENT", "bad").client_error
    assert not vi.WireError("500", "boom").client_error
    assert not vi.WireError("unreachable", "refused").client_error


def test_runner_names_and_one_line_messages():
    assert check_name("harness/conformance/test_inference.py::test_batch_invariance") == (
        "batch_invariance"
    )
    assert check_name("x.py::test_rejects_bad_request[empty_batch]") == (
        "rejects_bad_request[empty_batch]"
    )
    text = "def test():\n>   assert x\nE   AssertionError: p99 30 ms exceeds 20 ms\nE   more"
    assert one_line(text) == "p99 30 ms exceeds 20 ms"
    assert one_line("Failed: output 'y'[0] = 1, expected 2") == "output 'y'[0] = 1, expected 2"
