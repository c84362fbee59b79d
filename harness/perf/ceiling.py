"""The serving path's ceiling: a served python-backend model swapped for one that computes nothing.

Loaded with the served model's own config (batching, instances, preferred sizes), through Triton's
load API with the model file given inline, so the repository on disk is never touched. What
perf_analyzer then measures is the cost of the server, the python stub and the client alone: no
model served the same way can be faster, which tells a missed throughput floor that depends on the
model from one that the serving path itself cannot reach on this host.
"""

from __future__ import annotations

from pathlib import Path

from harness.serving.client import TritonClient
from harness.serving.materialize import RUNTIME_PARAM
from harness.serving.repository import config_from_json, config_to_json, set_parameter

NULL_MODEL_SOURCE = Path(__file__).with_name("null_model.py")
NULL_RUNTIME = "none"  # the runtime parameter the null model is loaded with


def serves_with_python(config: dict) -> bool:
    """True when the served config runs on the python backend (where the ceiling applies)."""
    return config.get("backend") == "python"


def is_null_model(config: dict) -> bool:
    """True when the served config is the one `load_null_model` loaded."""
    params = config.get("parameters", {})
    return params.get(RUNTIME_PARAM, {}).get("string_value") == NULL_RUNTIME


def load_null_model(client: TritonClient, model: str, served_config: dict) -> None:
    """Reload `model` as the zero-compute python model with `served_config` (a python config)."""
    if not serves_with_python(served_config):
        raise ValueError(f"model '{model}' is not served by the python backend")
    cfg = config_from_json(served_config)
    # A config equal to the served one would let Triton keep the loaded model (files ignored).
    set_parameter(cfg, RUNTIME_PARAM, NULL_RUNTIME)
    files = {"file:1/model.py": NULL_MODEL_SOURCE.read_bytes()}
    client.load(model, config_to_json(cfg), files=files)
