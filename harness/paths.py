"""Where things live: the repository root, configs/ and path resolution against the root."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(os.environ.get("HARNESS_ROOT", Path(__file__).resolve().parent.parent))
CONFIG_DIR = Path(os.environ.get("HARNESS_CONFIG_DIR", ROOT / "configs"))


def resolve(path: str | os.PathLike[str]) -> Path:
    """Resolve a config path: absolute stays, relative is taken from the repository root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else ROOT / p
