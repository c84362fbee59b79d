"""Model output shapes and config composition/overrides."""

from __future__ import annotations

import pytest
import torch

from harness.config import compose
from harness.errors import HarnessError
from harness.models.cnn import build_model


@pytest.mark.parametrize("channels,blocks", [(16, 3), (8, 2), (4, 1)])
@pytest.mark.parametrize("batch", [1, 5])
def test_output_shape(channels, blocks, batch):
    cfg = compose([f"model.channels={channels}", f"model.blocks={blocks}"])
    model = build_model(cfg.model).eval()
    out = model(torch.rand(batch, 1, 28, 28))
    assert out.shape == (batch, 10) and out.dtype == torch.float32


def test_architecture_is_alexnet_style():
    model = build_model(compose([]).model)
    kinds = {type(m).__name__ for m in model.modules()}
    assert {"Conv2d", "ReLU", "MaxPool2d", "Dropout", "Linear"} <= kinds


def test_defaults_and_overrides():
    cfg = compose([])
    assert cfg.data.name == "digits" and cfg.train.epochs > 0
    assert cfg.export.input_name == "images" and cfg.export.output_name == "logits"
    cfg = compose(["train.epochs=2", "model.channels=8", "data=mnist"])
    assert cfg.train.epochs == 2 and cfg.model.channels == 8 and cfg.data.name == "mnist"
    assert cfg.export.path.endswith("model_repository/mnist-onnx/1/model.onnx")


@pytest.mark.parametrize("bad", ["train.nope=1", "data=nope", "train.epochs=[", "=3"])
def test_bad_override_is_a_harness_error(bad):
    with pytest.raises(HarnessError, match="invalid configuration override"):
        compose([bad])


def test_no_tunable_is_missing_from_the_groups():
    cfg = compose([])
    for group in ("data", "model", "train", "export", "logging", "serve"):
        assert len(cfg[group]) > 0, group
