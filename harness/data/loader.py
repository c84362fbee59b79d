"""One loader for IDX data sets: the built digits set and real MNIST files, by config switch."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from harness.data.digits import prepare_digits
from harness.data.idx import read_idx
from harness.data.layout import required_files, split_paths
from harness.data.preprocess import to_model_input
from harness.errors import HarnessError
from harness.paths import resolve

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Split:
    """One split: uint8 images (N, H, W) and int64 labels (N,)."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def tensors(self, pixel_scale: float):
        """Model-ready float32 images (N, 1, H, W) and int64 labels, as torch tensors."""
        import torch

        x = torch.from_numpy(to_model_input(self.images, pixel_scale))
        return x, torch.from_numpy(self.labels)


def ensure_data(cfg: DictConfig) -> None:
    """Make the data files exist: DVC fetch when tracked, else build the digits set."""
    missing = [p for p in required_files(cfg.data) if not p.exists()]
    if not missing:
        return
    from harness.data import dvc

    missing = [p for p in missing if not dvc.fetch_if_tracked(cfg, p)]
    if not missing:
        return
    if cfg.data.source == "sklearn_digits":
        log.info("data files missing: building the digits data set under %s", cfg.data.dir)
        prepare_digits(cfg.data)
        return
    raise HarnessError(
        f"data file not found: {missing[0]} (data={cfg.data.name}: put the IDX files there)"
    )


def _read_pair(data_cfg: DictConfig, split: str) -> Split:
    img_path, lbl_path = split_paths(data_cfg, split)
    images, labels = read_idx(img_path), read_idx(lbl_path)
    if images.ndim != 3 or labels.ndim != 1:
        raise HarnessError(
            f"bad IDX shapes: {img_path} {images.shape} (need N,H,W), {lbl_path} {labels.shape}"
        )
    if len(images) != len(labels):
        raise HarnessError(
            f"IDX size mismatch: {img_path} has {len(images)} images, "
            f"{lbl_path} {len(labels)} labels"
        )
    size = data_cfg.image_size
    if images.shape[1:] != (size, size):
        raise HarnessError(f"{img_path}: images are {images.shape[1:]}, expected {size}x{size}")
    if labels.size and (labels.min() < 0 or labels.max() >= data_cfg.num_classes):
        raise HarnessError(f"{lbl_path}: labels outside 0..{data_cfg.num_classes - 1}")
    return Split(images.astype(np.uint8, copy=False), labels.astype(np.int64))


def load_split(cfg: DictConfig, split: str) -> Split:
    """Load one split (train/val/test); val is carved from train when no val files exist."""
    data_cfg = cfg.data
    ensure_data(cfg)
    if split in ("train", "val") and data_cfg.files.get("val") is None:
        full = _read_pair(data_cfg, "train")
        rng = np.random.default_rng(data_cfg.val_split_seed)
        order = rng.permutation(len(full))
        n_val = int(round(len(full) * data_cfg.val_fraction))
        idx = np.sort(order[:n_val] if split == "val" else order[n_val:])
        return Split(full.images[idx], full.labels[idx])
    return _read_pair(data_cfg, split)


def prepare(cfg: DictConfig, force: bool = False) -> list[Path]:
    """Build the digits IDX files (all, when any is missing or `force`); return their paths."""
    data_cfg = cfg.data
    if data_cfg.source != "sklearn_digits":
        ensure_data(cfg)  # nothing to build for real MNIST: only check the files are there
        return required_files(data_cfg)
    if force or not all(p.exists() for p in required_files(data_cfg)):
        return prepare_digits(data_cfg)
    return required_files(data_cfg)


def describe(cfg: DictConfig) -> str:
    """Split sizes, image shape, pixel statistics and class counts of the configured data set."""
    lines = [f"data set: {cfg.data.name} ({cfg.data.source}) in {resolve(cfg.data.dir)}"]
    classes = cfg.data.num_classes
    for split in ("train", "val", "test"):
        s = load_split(cfg, split)
        counts = np.bincount(s.labels, minlength=classes)
        lines.append(
            f"{split:>5}: {len(s):>6} images {s.images.shape[1]}x{s.images.shape[2]} uint8, "
            f"mean pixel {s.images.mean():.1f}, per class {' '.join(map(str, counts))}"
        )
    return "\n".join(lines)
