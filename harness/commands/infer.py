"""`harness infer`: predict the test split with the trained model; predictions.csv + metrics."""

from __future__ import annotations

import argparse

from harness.commands.args import add_overrides
from harness.config import compose


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the infer options."""
    parser.add_argument(
        "--split", default="test", choices=["train", "val", "test"], help="split to predict"
    )
    add_overrides(parser)


def run(args: argparse.Namespace) -> int:
    """Write predictions.csv and print accuracy, macro-F1 and the confusion matrix."""
    cfg = compose(args.overrides)
    from harness.training.infer import infer

    report = infer(cfg, split=args.split)
    print(f"predictions: {report['predictions_file']} ({report['n']} rows)")
    print(f"accuracy: {report['accuracy']:.4f}")
    print(f"macro-F1: {report['macro_f1']:.4f}")
    print("confusion matrix (rows: true, columns: predicted):")
    print(report["confusion_text"])
    return 0
