"""Inference on a data split with the trained model: predictions.csv and metrics."""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig

from harness.data.loader import load_split
from harness.io import write_predictions
from harness.paths import resolve
from harness.training.loop import load_trained, predict, setup_determinism
from harness.training.metrics import accuracy, confusion_matrix, format_confusion, macro_f1


def infer(cfg: DictConfig, split: str = "test") -> dict[str, Any]:
    """Predict `split`; write train.predictions_file atomically; return the metrics."""
    setup_determinism(cfg)
    model, saved = load_trained(cfg)
    data = load_split(cfg, split)
    x, y = data.tensors(cfg.data.pixel_scale)
    probs = torch.softmax(predict(model, x, cfg.train.eval_batch_size), dim=1)
    conf, pred = probs.max(1)
    y_np, pred_np = y.numpy(), pred.numpy()
    path = write_predictions(resolve(cfg.train.predictions_file), pred_np, conf.numpy(), y_np)
    cm = confusion_matrix(y_np, pred_np, saved.model.num_classes)
    return {
        "predictions_file": str(path),
        "n": len(y_np),
        "accuracy": accuracy(y_np, pred_np),
        "macro_f1": macro_f1(cm),
        "confusion": cm,
        "confusion_text": format_confusion(cm),
    }
