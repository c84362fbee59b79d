"""Client-side packing: validation against metadata, chunking, unpacking helpers (no server)."""

from __future__ import annotations

import numpy as np
import pytest

from harness.errors import HarnessError
from harness.serving.client import chunks, classify, model_info, softmax, validate_inputs

METADATA = {
    "name": "mnist-onnx",
    "versions": ["1"],
    "inputs": [{"name": "images", "datatype": "FP32", "shape": ["-1", "1", "28", "28"]}],
    "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}],
}
INFO = model_info(METADATA, {"config": {"max_batch_size": "64"}})


def test_model_info_from_json():
    assert INFO.max_batch_size == 64 and INFO.batched
    assert INFO.inputs[0].shape == (-1, 1, 28, 28)
    assert INFO.inputs[0].np_dtype == np.float32


@pytest.mark.parametrize(
    "arr, match",
    [
        (np.zeros((2, 28, 28), np.float32), r"shape \[2, 28, 28\].*expects \[N, 1, 28, 28\]"),
        (np.zeros((2, 1, 28, 27), np.float32), "shape"),
        (np.zeros((2, 1, 28, 28), np.float64), "dtype float64.*FP32"),
        (np.zeros((0, 1, 28, 28), np.float32), "empty batch"),
        ([[0.0]], "numpy array"),
    ],
)
def test_bad_inputs_are_one_clear_line(arr, match):
    with pytest.raises(HarnessError, match=match) as info:
        validate_inputs(INFO, arr)
    assert "\n" not in str(info.value)


def test_wrong_and_missing_names():
    with pytest.raises(HarnessError, match="no input pixels"):
        validate_inputs(INFO, {"pixels": np.zeros((1, 1, 28, 28), np.float32)})
    with pytest.raises(HarnessError, match="missing input images"):
        validate_inputs(INFO, {})


def test_chunks_respect_max_batch_and_keep_order():
    x = np.arange(150 * 784, dtype=np.float32).reshape(150, 1, 28, 28)
    pieces = chunks(INFO, validate_inputs(INFO, x))
    assert [len(p["images"]) for p in pieces] == [64, 64, 22]
    np.testing.assert_array_equal(np.concatenate([p["images"] for p in pieces]), x)
    assert [len(p["images"]) for p in chunks(INFO, {"images": x}, batch=100)] == [64, 64, 22]
    assert [len(p["images"]) for p in chunks(INFO, {"images": x}, batch=50)] == [50, 50, 50]


def test_classify_matches_an_independent_softmax():
    logits = np.random.default_rng(0).normal(size=(5, 10)).astype(np.float32) * 30
    got = classify(logits)
    ref = np.exp(logits.astype(np.float64))
    ref /= ref.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(got.probabilities, ref, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(got.labels, logits.argmax(1))
    assert np.isfinite(softmax(np.array([[1e4, -1e4]], np.float32))).all()
