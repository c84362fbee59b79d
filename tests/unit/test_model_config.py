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


def _chain(node: ast.AST, roots: dict[str, str]) -> str | None:
    """`cfg.a.b` (or `alias.b` with alias = cfg.a) as "a.b"; None for anything else."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or node.id not in roots:
        return None
    prefix = [roots[node.id]] if roots[node.id] else []
    return ".".join(prefix + list(reversed(parts))) or None


def _own_nodes(scope: ast.AST) -> list[ast.AST]:
    """The nodes of a module or function, without those of the functions nested in it."""
    out, todo = [], list(ast.iter_child_nodes(scope))
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        out.append(node)
        todo.extend(ast.iter_child_nodes(node))
    return out


def _cfg_chains() -> dict[str, str]:
    """Every `cfg.<group>.<key>...` chain read in harness/ -> the first file reading it.

    Local aliases are followed within a function (`tc = cfg.train` ... `tc.lr` is train.lr)
    when every assignment to that name in the function is the same config chain.
    """
    chains: dict[str, str] = {}
    for path in sorted((ROOT / "harness").rglob("*.py")):
        where = str(path.relative_to(ROOT))
        tree = ast.parse(path.read_text(encoding="utf-8"))
        funcs = (ast.FunctionDef, ast.AsyncFunctionDef)
        for scope in [tree] + [n for n in ast.walk(tree) if isinstance(n, funcs)]:
            nodes = _own_nodes(scope)
            bound: dict[str, set[str | None]] = {}
            for node in nodes:
                targets = node.targets if isinstance(node, ast.Assign) else []
                for target in targets:
                    if isinstance(target, ast.Name):
                        value = _chain(node.value, {"cfg": ""}) if len(targets) == 1 else None
                        bound.setdefault(target.id, set()).add(value)
            roots = {"cfg": ""} | {
                name: next(iter(vals))
                for name, vals in bound.items()
                if name != "cfg" and len(vals) == 1 and None not in vals
            }
            for node in nodes:
                chain = _chain(node, roots) if isinstance(node, ast.Attribute) else None
                if chain:
                    chains.setdefault(chain, where)
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
