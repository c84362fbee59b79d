"""Where a data set's files are: data.dir plus data.files.<split>.{images,labels}."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from harness.errors import HarnessError
from harness.paths import resolve


def split_paths(data_cfg: DictConfig, split: str, existing: bool = True) -> tuple[Path, Path]:
    """Image and label file of `split`; with `existing`, prefer whichever of X / X.gz exists."""
    files = data_cfg.files.get(split)
    if files is None:
        raise HarnessError(f"data set '{data_cfg.name}' has no '{split}' files configured")
    base = resolve(data_cfg.dir)
    out = []
    for name in (files.images, files.labels):
        path = base / name
        if existing and not path.exists():
            alt = path.with_name(path.name[:-3]) if path.suffix == ".gz" else Path(f"{path}.gz")
            path = alt if alt.exists() else path
        out.append(path)
    return out[0], out[1]


def required_files(data_cfg: DictConfig) -> list[Path]:
    """Every file the configured data set needs."""
    return [
        p for s in data_cfg.files if data_cfg.files[s] is not None for p in split_paths(data_cfg, s)
    ]
