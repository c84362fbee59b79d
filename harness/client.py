"""`harness.client`: the Triton client API (re-exported from harness.serving.client)."""

from harness.serving.client import (  # noqa: F401
    Classification,
    ModelInfo,
    TensorSpec,
    TritonClient,
    chunks,
    classify,
    model_info,
    pack,
    softmax,
    unpack,
    validate_inputs,
)
