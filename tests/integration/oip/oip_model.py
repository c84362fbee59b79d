"""The served classifier and its deliberate faults, shared by every OIP server script.

Each server runs in its own venv (MLServer: numpy 1, KServe: numpy 2), so this module imports
only the standard library, numpy and onnxruntime, never `harness`.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import onnxruntime as ort

MODEL_NAME = "mnist-onnx"
INPUT = "images"
OUTPUT = "logits"
SAMPLE_SHAPE = (1, 28, 28)
NUM_CLASSES = 10
MAX_BATCH = 64
SLOW_DELAY_S = 0.05
FAULTS = ("wrong_weights", "swapped_rows", "wrong_dtype", "dies_on_bad_input", "slow")
# What the metadata of every server declares, whatever a fault answers.
INPUT_SPEC = {"name": INPUT, "datatype": "FP32", "shape": [-1, *SAMPLE_SHAPE]}
OUTPUT_SPEC = {"name": OUTPUT, "datatype": "FP32", "shape": [-1, NUM_CLASSES]}
DIES_EXIT_CODE = 3


class BadRequest(ValueError):
    """A request the classifier refuses (servers map it to their own 400 error)."""


class Classifier:
    """onnxruntime on the ONNX file, with at most one deliberate fault applied to its answers."""

    def __init__(self, model_path: str, fault: str | None = None) -> None:
        if fault and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r} (choose from {', '.join(FAULTS)})")
        self.fault = fault or None
        opts = ort.SessionOptions()
        # One thread: several servers share two cores with the test process.
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            model_path, sess_options=opts, providers=["CPUExecutionProvider"]
        )

    @property
    def delay_s(self) -> float:
        """Seconds the server must add to every request (the `slow` fault)."""
        return SLOW_DELAY_S if self.fault == "slow" else 0.0

    def check(self, inputs: dict[str, tuple[str, list[int]]]) -> None:
        """Refuse anything but one FP32 `images` [1..64, 1, 28, 28]; `dies_on_bad_input` exits."""
        names = sorted(inputs)
        if names != [INPUT]:
            raise BadRequest(f"expected exactly one input '{INPUT}', got {names}")
        datatype, shape = inputs[INPUT]
        shape = [int(d) for d in shape]
        if len(shape) != 4 or tuple(shape[1:]) != SAMPLE_SHAPE or not 1 <= shape[0] <= MAX_BATCH:
            if self.fault == "dies_on_bad_input":
                # The fault: a crash instead of a 400, so the server is gone afterwards.
                print(f"dies_on_bad_input: exiting on shape {shape}", file=sys.stderr, flush=True)
                os._exit(DIES_EXIT_CODE)
            raise BadRequest(
                f"input '{INPUT}' has shape {shape}, expected [1..{MAX_BATCH}, "
                f"{', '.join(map(str, SAMPLE_SHAPE))}]"
            )
        if datatype != "FP32":
            raise BadRequest(f"input '{INPUT}' has datatype {datatype}, expected FP32")

    def run(self, images: np.ndarray) -> np.ndarray:
        """Logits of a (possibly concatenated) batch, without any fault."""
        return self.session.run([OUTPUT], {INPUT: np.ascontiguousarray(images, np.float32)})[0]

    def answer(self, logits: np.ndarray) -> np.ndarray:
        """The logits one request gets back, with the answer-level faults applied."""
        if self.fault == "swapped_rows":
            logits = logits[::-1]
        if self.fault == "wrong_dtype":
            logits = logits.astype(np.float64)
        return np.ascontiguousarray(logits)

    def infer(self, images: np.ndarray) -> np.ndarray:
        """The answer to one request's images."""
        return self.answer(self.run(images))
