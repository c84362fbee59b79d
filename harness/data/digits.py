"""The default data set: scikit-learn's bundled handwritten digits, made to look like MNIST.

`load_digits` holds 1,797 real 8x8 digits with 17 grey levels. Each image is upsampled
(bilinear) to a `digit_size` box and centred on an `image_size` canvas, as MNIST centres its
20x20 digits on 28x28, then split per class into train/val/test with a fixed seed and written as
IDX files, so the one IDX loader serves this set and real MNIST alike.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from harness.data.idx import write_idx
from harness.data.layout import split_paths
from harness.errors import HarnessError
from harness.paths import resolve

SPLITS = ("train", "val", "test")


def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """Bilinear resampling matrix (n_out x n_in), half-pixel centres (align_corners=False)."""
    pos = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
    pos = np.clip(pos, 0, n_in - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = pos - lo
    m = np.zeros((n_out, n_in))
    m[np.arange(n_out), lo] += 1 - frac
    m[np.arange(n_out), hi] += frac
    return m


def resize_digits(images: np.ndarray, max_value: float, digit_size: int, image_size: int):
    """(N, h, w) grey levels in [0, max_value] -> (N, image_size, image_size) uint8, centred."""
    if digit_size > image_size:
        raise HarnessError(f"digit_size {digit_size} does not fit image_size {image_size}")
    n, h, w = images.shape
    rows, cols = _interp_matrix(digit_size, h), _interp_matrix(digit_size, w)
    box = np.einsum("ij,njk,lk->nil", rows, images.astype(np.float64), cols)
    box = np.clip(np.rint(box * (255.0 / max_value)), 0, 255).astype(np.uint8)
    out = np.zeros((n, image_size, image_size), dtype=np.uint8)
    off = (image_size - digit_size) // 2
    out[:, off : off + digit_size, off : off + digit_size] = box
    return out


def stratified_split(
    labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, np.ndarray]:
    """Per-class shuffled split into sorted index arrays; the same seed gives the same split."""
    if not (0 <= val_fraction and 0 < test_fraction and val_fraction + test_fraction < 1):
        raise HarnessError(
            f"invalid split fractions: val={val_fraction} test={test_fraction} (need sum < 1)"
        )
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n_test = int(round(len(idx) * test_fraction))
        n_val = int(round(len(idx) * val_fraction))
        parts["test"].append(idx[:n_test])
        parts["val"].append(idx[n_test : n_test + n_val])
        parts["train"].append(idx[n_test + n_val :])
    return {s: np.sort(np.concatenate(p)) for s, p in parts.items()}


def build_digits(data_cfg: DictConfig) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Build the split data set in memory: split -> (uint8 images N x S x S, uint8 labels)."""
    from sklearn.datasets import load_digits

    b = data_cfg.build
    bunch = load_digits()
    images = resize_digits(bunch.images, b.max_value, b.digit_size, b.image_size)
    labels = bunch.target.astype(np.uint8)
    split = stratified_split(labels, b.val_fraction, b.test_fraction, b.split_seed)
    return {s: (images[i], labels[i]) for s, i in split.items()}


def prepare_digits(data_cfg: DictConfig) -> list[Path]:
    """Write the digits data set as IDX files under data.dir; return the written paths."""
    out: list[Path] = []
    for split, (images, labels) in build_digits(data_cfg).items():
        img_path, lbl_path = split_paths(data_cfg, split, existing=False)
        out += [write_idx(img_path, images), write_idx(lbl_path, labels)]
    return out


def data_dir(data_cfg: DictConfig) -> Path:
    """The resolved data directory."""
    return resolve(data_cfg.dir)
