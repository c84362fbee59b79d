"""`harness client`: send the test split (or image files) to Triton; accuracy and latency."""

from __future__ import annotations

import argparse

from harness.commands.args import add_overrides
from harness.config import compose


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register client's options."""
    parser.add_argument(
        "--url",
        help="server address (host:port of the chosen protocol); default: start the configured "
        "backend for the duration of the run",
    )
    parser.add_argument("--protocol", choices=["http", "grpc"], help="default: triton.client")
    parser.add_argument("--model", help="model name (default: triton.model_name)")
    parser.add_argument(
        "--images",
        nargs="+",
        help="image files (PNG/JPEG, any size: converted to 28x28 grey) or .npy arrays "
        "[N,1,28,28]; default: the test split",
    )
    parser.add_argument("--batch-size", type=int, help="images per request")
    parser.add_argument(
        "--predictions",
        help="also write the predictions as CSV (the columns of `harness infer`'s predictions.csv)",
    )
    add_overrides(parser)


def run(args: argparse.Namespace) -> int:
    """Classify the images over HTTP/gRPC and print accuracy and latency percentiles."""
    from harness.serving.predict import run_client

    cfg = compose(args.overrides)
    for line in run_client(
        cfg,
        url=args.url,
        protocol=args.protocol,
        model=args.model,
        image_files=args.images,
        batch_size=args.batch_size,
        predictions_file=args.predictions,
    ):
        print(line)
    return 0
