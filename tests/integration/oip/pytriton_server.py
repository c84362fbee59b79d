"""PyTriton serving the classifier: a Python function bound to the embedded tritonserver.

Run by `PyTritonLauncher` in the project's venv:
    python pytriton_server.py --model FILE --http-port P --grpc-port Q --metrics-port M [--fault F]
"""

from __future__ import annotations

import argparse
import logging
import signal
import time

import numpy as np
from oip_model import INPUT, MAX_BATCH, MODEL_NAME, NUM_CLASSES, OUTPUT, SAMPLE_SHAPE, Classifier
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig


def make_infer(clf: Classifier):
    """The callable PyTriton runs: one onnxruntime call per dynamic batch, split per request."""

    def infer(requests: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        # Triton hands over the requests of one dynamic batch without concatenating them.
        sizes = [len(req[INPUT]) for req in requests]
        logits = clf.run(np.concatenate([req[INPUT] for req in requests]))
        if clf.delay_s:
            time.sleep(clf.delay_s)
        parts = np.split(logits, np.cumsum(sizes)[:-1])
        return [{OUTPUT: clf.answer(part)} for part in parts]

    return infer


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main() -> None:
    """Parse the flags, bind the model, serve until SIGTERM."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True)
    ap.add_argument("--fault", default="")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--http-port", type=int, required=True)
    ap.add_argument("--grpc-port", type=int, required=True)
    ap.add_argument("--metrics-port", type=int, required=True)
    ap.add_argument("--workspace", default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.fault in ("wrong_dtype", "dies_on_bad_input"):
        # Triton declares and checks the datatypes and shapes itself: these faults cannot show.
        raise SystemExit(f"pytriton cannot serve the fault {args.fault!r}")

    clf = Classifier(args.model, args.fault)
    config = TritonConfig(
        http_address=args.host,
        http_port=args.http_port,
        grpc_address=args.host,
        grpc_port=args.grpc_port,
        metrics_address=args.host,
        metrics_port=args.metrics_port,
        allow_gpu_metrics=False,
        exit_on_error=True,
    )
    # SIGTERM -> SystemExit, so the context manager stops tritonserver and its proxy cleanly.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    with Triton(config=config, workspace=args.workspace) as triton:
        triton.bind(
            model_name=MODEL_NAME,
            infer_func=make_infer(clf),
            inputs=[Tensor(name=INPUT, dtype=np.float32, shape=SAMPLE_SHAPE)],
            outputs=[Tensor(name=OUTPUT, dtype=np.float32, shape=(NUM_CLASSES,))],
            config=ModelConfig(
                max_batch_size=MAX_BATCH,
                batcher=DynamicBatcher(max_queue_delay_microseconds=100),
            ),
            strict=True,
        )
        triton.serve()


if __name__ == "__main__":
    main()
