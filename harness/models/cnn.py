"""A small AlexNet-style CNN for 28x28 digits (conv/ReLU/pool blocks, dropout, linear head)."""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn


class DigitCNN(nn.Module):
    """conv(k)-ReLU-maxpool blocks doubling the width, then dropout-linear-ReLU-dropout-linear."""

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        num_classes: int = 10,
        channels: int = 16,
        blocks: int = 3,
        kernel_size: int = 3,
        hidden: int = 128,
        dropout: float = 0.25,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in, size = in_channels, image_size
        for i in range(blocks):
            c_out = channels * 2**i
            layers += [
                nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            c_in, size = c_out, size // 2
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(c_in * size * size, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes) for images (N, C, H, W) scaled to [0, 1]."""
        return self.classifier(self.features(x))


def build_model(model_cfg: DictConfig) -> DigitCNN:
    """Build the CNN from the `model` config group."""
    return DigitCNN(
        in_channels=model_cfg.in_channels,
        image_size=model_cfg.image_size,
        num_classes=model_cfg.num_classes,
        channels=model_cfg.channels,
        blocks=model_cfg.blocks,
        kernel_size=model_cfg.kernel_size,
        hidden=model_cfg.hidden,
        dropout=model_cfg.dropout,
    )
