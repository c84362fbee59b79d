"""The one preprocessing: raw pixels -> model input, the same for training and serving."""

from __future__ import annotations

import numpy as np
import pytest

from harness.data.loader import Split
from harness.data.preprocess import to_model_input
from harness.errors import HarnessError


def test_scales_raw_pixels_and_adds_the_channel_axis():
    raw = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    x = to_model_input(raw, 255.0)
    assert x.dtype == np.float32 and x.shape == (1, 1, 2, 2)
    np.testing.assert_array_equal(x[0, 0], np.array([[0, 1], [0.2, 0.4]], np.float32))
    np.testing.assert_array_equal(to_model_input(raw[:, None], 255.0), x)


def test_training_tensors_are_exactly_the_served_input():
    rng = np.random.default_rng(0)
    split = Split(rng.integers(0, 256, (5, 28, 28), dtype=np.uint8), np.arange(5))
    x, _ = split.tensors(255.0)
    np.testing.assert_array_equal(x.numpy(), to_model_input(split.images, 255.0))


@pytest.mark.parametrize("shape", [(28, 28), (2, 3, 28, 28)])
def test_wrong_shapes_are_one_clear_error(shape):
    with pytest.raises(HarnessError, match="grey pixels"):
        to_model_input(np.zeros(shape), 255.0)
