"""`harness run-server`: serve the logged ONNX model with `mlflow models serve` until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import time

from harness.commands.args import add_overrides
from harness.config import compose


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the run-server options."""
    parser.add_argument("--model-uri", default=None, help="model to serve (default: last train)")
    parser.add_argument("--port", type=int, default=None, help="port (default serve.port/free)")
    add_overrides(parser)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the servers like Ctrl-C does


def run(args: argparse.Namespace) -> int:
    """Start the model server (and a local tracking server when needed); wait for a signal."""
    cfg = compose(args.overrides)
    from harness.services.mlflow import serve_logged_model

    signal.signal(signal.SIGTERM, _terminate)
    with serve_logged_model(cfg, model_uri=args.model_uri, port=args.port) as server:
        print(f"serving {server.model_uri} at {server.url}/invocations", flush=True)
        print('POST {"inputs": {"images": [N x 1 x 28 x 28 floats]}}; Ctrl-C stops', flush=True)
        try:
            while server.running():
                time.sleep(0.5)
        except KeyboardInterrupt:
            return 0
    print("harness: error: the model server exited unexpectedly", file=sys.stderr)
    return 1
