"""The committed golden classifier (fixtures/triton): its ONNX file, inputs, expected outputs.

Made by fixtures/triton/make_golden.py (see provenance.json); used by the demo when no model is
exported, by the tests, and as the example reference of `harness verify inference`.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from harness.paths import FIXTURES_DIR, resolve

GOLDEN_DIR = FIXTURES_DIR / "triton"


@dataclass(frozen=True)
class Golden:
    """The committed golden data: ONNX file, inputs and expected outputs."""

    model_path: Path
    images: np.ndarray
    labels: np.ndarray
    logits: np.ndarray
    predicted: np.ndarray
    provenance: dict


def load_golden(directory: Path = GOLDEN_DIR) -> Golden:
    """Load fixtures/triton (made by fixtures/triton/make_golden.py)."""
    data = np.load(directory / "golden.npz")
    return Golden(
        model_path=directory / "model.onnx",
        images=data["images"],
        labels=data["labels"],
        logits=data["logits"],
        predicted=data["predicted"],
        provenance=json.loads((directory / "provenance.json").read_text()),
    )


def make_fixture_repository(cfg: DictConfig, dst: Path, model_path: Path | None = None) -> Path:
    """A canonical-style repository: the real config.pbtxt of the classifier + the fixture ONNX."""
    name = cfg.triton.model_name
    src = resolve(cfg.triton.repository) / name / "config.pbtxt"
    (dst / name / "1").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst / name / "config.pbtxt")
    shutil.copyfile(model_path or GOLDEN_DIR / "model.onnx", dst / name / "1" / "model.onnx")
    return dst
