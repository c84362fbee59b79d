"""`harness export`: the trained classifier to ONNX in the model repository, parity-checked."""

from __future__ import annotations

import argparse

from harness.commands.args import add_overrides
from harness.config import compose


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the export options."""
    parser.add_argument("--output", default=None, help="write here instead of export.path")
    add_overrides(parser)


def run(args: argparse.Namespace) -> int:
    """Load model.pt, export, check parity against PyTorch, print the path."""
    cfg = compose(args.overrides)
    from harness.export.onnx import check_parity, export_onnx
    from harness.training import load_trained

    model, saved = load_trained(cfg)
    # The saved model's architecture wins; the export settings come from the current config.
    cfg.model = saved.model
    path = export_onnx(cfg, model, path=args.output)
    diff = check_parity(cfg, model, path)
    print(f"exported {path} (opset {cfg.export.opset}, max abs diff vs torch {diff:.2e})")
    return 0
