"""DVC integration (owned by the storage issue): fetch DVC-tracked data through the Python API."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig


def fetch_if_tracked(cfg: DictConfig, path: Path) -> bool:
    """Fetch `path` from the DVC remote if it is DVC-tracked; True when it now exists."""
    return False
