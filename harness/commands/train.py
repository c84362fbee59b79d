"""`harness train [overrides]`: train the digit classifier (MLflow logging, checkpoints)."""

from __future__ import annotations

import argparse

from harness.commands.args import add_overrides
from harness.config import compose


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the train options."""
    parser.epilog = (
        "examples: harness train train.epochs=2 model.channels=16 | harness train resume=true | "
        "harness train logging.tracking_uri=http://host:5000"
    )
    add_overrides(parser)


def run(args: argparse.Namespace) -> int:
    """Train, then print the summary (test accuracy, files, MLflow run)."""
    cfg = compose(args.overrides)
    from harness.training import train

    result = train(cfg)
    if "stopped_after_epoch" in result:
        print(f"stopped after epoch {result['stopped_after_epoch']}: continue with resume=true")
        return 0
    print(f"test accuracy: {result['test_accuracy']:.4f} (loss {result['test_loss']:.4f})")
    print(
        f"training time: {result['train_seconds']:.1f}s, "
        f"{result['images_per_second']:.0f} images/s, {result['train_cpu_seconds']:.1f} CPU-s"
    )
    print(f"model: {result['model_file']}")
    print(f"onnx: {result['onnx_file']}")
    if result.get("run_id"):
        print(f"mlflow run: {result['run_id']} ({result['model_uri']})")
    return 0
