"""Training: the deterministic loop, metrics, MLflow logging, checkpoint state and stores."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from harness.models.cnn import DigitCNN


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train per cfg (see harness.training.loop.train)."""
    from harness.training.loop import train as _train

    return _train(cfg)


def load_trained(cfg: DictConfig, path: str | None = None) -> tuple[DigitCNN, DictConfig]:
    """Load ${train.model_file} (state dict + resolved config) as an eval-mode model."""
    from harness.training.loop import load_trained as _load

    return _load(cfg, path)
