"""The digit-classifier pipeline end to end: prepare -> train -> infer -> export -> serve the
logged ONNX model with MLflow -> query it -> summary lines."""

from __future__ import annotations

import copy
import json
import time
import urllib.request

import numpy as np
from omegaconf import DictConfig, open_dict

from harness.errors import HarnessError


def query_model_server(url: str, images: np.ndarray, input_name: str, timeout: float) -> np.ndarray:
    """POST images to an `mlflow models serve` /invocations; return the logits array."""
    body = json.dumps({"inputs": {input_name: images.tolist()}}).encode()
    req = urllib.request.Request(
        url.rstrip("/") + "/invocations", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (local server)
        answer = json.loads(resp.read())
    preds = answer["predictions"]
    if isinstance(preds, dict):  # named outputs: {"logits": [...]}
        preds = next(iter(preds.values()))
    return np.asarray(preds, dtype=np.float32)


def run_demo(cfg: DictConfig) -> list[str]:
    """Run the pipeline on `cfg` and return summary lines (one MLflow server for it all)."""
    from harness.data.loader import load_split, prepare
    from harness.data.preprocess import to_model_input
    from harness.export.onnx import export_onnx, onnx_session
    from harness.services.mlflow import (
        configured_tracking_uri,
        local_tracking_server,
        serve_logged_model,
    )
    from harness.training import load_trained, train
    from harness.training.infer import infer

    cfg = copy.deepcopy(cfg)  # the tracking URI set below is ours, not the next demo step's
    t0 = time.perf_counter()
    lines: list[str] = []
    files = prepare(cfg)
    lines.append(f"data: {cfg.data.name}, {len(files)} IDX files in {files[0].parent}")
    tracking = None
    if cfg.logging.enabled and not configured_tracking_uri(cfg):
        # One tracking server for train and serve instead of two start-ups.
        tracking = local_tracking_server(cfg)
        tracking.start()
        with open_dict(cfg):
            cfg.logging.tracking_uri = tracking.url
    try:
        result = train(cfg)
        lines.append(
            f"train: test accuracy {result['test_accuracy']:.4f}, "
            f"{result['train_seconds']:.1f}s ({result['images_per_second']:.0f} images/s), "
            f"model {result['model_file']}"
        )
        rep = infer(cfg)
        lines.append(
            f"infer: accuracy {rep['accuracy']:.4f}, macro-F1 {rep['macro_f1']:.4f}, "
            f"{rep['n']} rows in {rep['predictions_file']}"
        )
        model, _ = load_trained(cfg)
        onnx_path = export_onnx(cfg, model)
        lines.append(f"export: {onnx_path}")
        if result.get("model_uri"):
            test = load_split(cfg, "test")
            x = to_model_input(test.images[:16], cfg.data.pixel_scale)
            ref = onnx_session(onnx_path).run([cfg.export.output_name], {cfg.export.input_name: x})[
                0
            ]
            with serve_logged_model(cfg) as served:
                got = query_model_server(
                    served.url, x, cfg.export.input_name, cfg.serve.request_timeout
                )
            if got.shape != ref.shape:
                raise HarnessError(f"model server answered shape {got.shape}, expected {ref.shape}")
            diff = float(np.abs(got - ref).max())
            lines.append(
                f"mlflow: run {result['run_id']} at {result['tracking_uri']}; served "
                f"{result['model_uri']}: 16 test images, max |served - onnxruntime| {diff:.1e}"
            )
    finally:
        if tracking is not None:
            tracking.stop()
    lines.append(f"pipeline total: {time.perf_counter() - t0:.1f}s")
    return lines
