"""Model output shapes and config composition/overrides."""

from __future__ import annotations

import ast

import pytest
import torch
from omegaconf import OmegaConf

from harness.config import compose
from harness.errors import HarnessError
from harness.models.cnn import build_model
from harness.paths import ROOT


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


# DictConfig methods the code calls on a group (cfg.stack.ports.items()): not settings.
_METHODS = {"get", "items", "keys", "values", "pop", "copy"}


def _cfg_chains() -> dict[str, str]:
    """Every `cfg.<group>.<key>...` attribute chain in harness/ -> the first file using it."""
    chains: dict[str, str] = {}
    for path in sorted((ROOT / "harness").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            parts: list[str] = []
            while isinstance(node, ast.Attribute):
                parts.append(node.attr)
                node = node.value
            if isinstance(node, ast.Name) and node.id == "cfg" and parts:
                chains.setdefault(".".join(reversed(parts)), str(path.relative_to(ROOT)))
    return chains


def test_no_tunable_is_missing_from_the_groups():
    """Every setting the code reads as cfg.<group>.<key> exists in the composed defaults.

    The oracle is the source itself (an AST scan of harness/), not the config: a key dropped
    from configs/ while the code still reads it fails here, not in the middle of a command.
    """
    cfg = compose([])
    chains = _cfg_chains()
    checked, missing = 0, []
    for chain, where in chains.items():
        parts = chain.split(".")
        if parts[0] not in cfg:
            continue  # not a group: an attribute of some other object named cfg
        node = cfg
        for part in parts:
            if not OmegaConf.is_config(node) or part in _METHODS:
                break  # reached a value (or a method of the config): the chain resolved
            if part not in node:
                missing.append(f"{chain} (read in {where})")
                break
            node = node[part]
        checked += 1
    assert not missing, "settings read by the code but absent from configs/:\n" + "\n".join(missing)
    # The scan itself must see the code: the six core groups are read under these names.
    seen = {c.split(".")[0] for c in chains}
    assert {"data", "model", "train", "export", "logging", "serve"} <= seen, seen
    assert checked >= 100, checked
