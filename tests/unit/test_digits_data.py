"""The digits data set: deterministic split, MNIST-like images, one loader for both sources."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from harness.config import compose
from harness.data.digits import build_digits, resize_digits, stratified_split
from harness.data.idx import write_idx
from harness.data.layout import split_paths
from harness.data.loader import load_split
from harness.errors import HarnessError


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    d = tmp_path_factory.mktemp("digits")
    return compose([f"data.dir={d}"])


def test_split_is_deterministic_and_disjoint():
    labels = load_digits().target
    a = stratified_split(labels, 0.1, 0.2, seed=0)
    b = stratified_split(labels, 0.1, 0.2, seed=0)
    c = stratified_split(labels, 0.1, 0.2, seed=1)
    for s in a:
        np.testing.assert_array_equal(a[s], b[s])
    assert not np.array_equal(a["test"], c["test"])
    all_idx = np.concatenate([a["train"], a["val"], a["test"]])
    assert len(all_idx) == len(labels) == len(np.unique(all_idx))
    # stratified: every class is in every split, test share near 20% per class
    for s in a:
        assert set(labels[a[s]]) == set(range(10))
    frac = np.bincount(labels[a["test"]]) / np.bincount(labels)
    assert np.all(np.abs(frac - 0.2) < 0.02)


def test_bad_fractions_rejected():
    with pytest.raises(HarnessError, match="split fractions"):
        stratified_split(np.zeros(10, int), 0.5, 0.6, 0)


def test_resize_keeps_the_digit_centred_and_scaled():
    img = np.zeros((1, 8, 8))
    img[0, 2:6, 3:5] = 16
    out = resize_digits(img, 16, 20, 28)
    assert out.shape == (1, 28, 28) and out.dtype == np.uint8
    assert out.max() == 255
    assert out[0, :4].sum() == 0 and out[0, 24:].sum() == 0  # 4-pixel border stays empty
    ys, xs = np.nonzero(out[0])
    assert abs(ys.mean() - 13.5) < 1 and abs(xs.mean() - 13.5) < 1


def test_resize_matches_an_independent_bilinear_resampler():
    # Oracle: scipy.ndimage.zoom's order-1 spline on a constant-border image agrees in the
    # interior with our half-pixel bilinear resampler when sampling the same centres.
    from scipy.ndimage import map_coordinates

    rng = np.random.default_rng(0)
    img = rng.random((1, 8, 8)) * 16
    ours = resize_digits(img, 16, 20, 20)[0].astype(float)
    pos = np.clip((np.arange(20) + 0.5) * 8 / 20 - 0.5, 0, 7)
    yy, xx = np.meshgrid(pos, pos, indexing="ij")
    ref = map_coordinates(img[0], [yy, xx], order=1) * 255 / 16
    assert np.abs(ours - np.clip(np.rint(ref), 0, 255)).max() <= 1


def test_prepared_files_load_back_identically(cfg):
    built = build_digits(cfg.data)
    for split in ("train", "val", "test"):
        s = load_split(cfg, split)  # builds the IDX files on first use
        np.testing.assert_array_equal(s.images, built[split][0])
        np.testing.assert_array_equal(s.labels, built[split][1])
    sizes = [len(load_split(cfg, s)) for s in ("train", "val", "test")]
    assert sum(sizes) == 1797
    x, y = load_split(cfg, "test").tensors(cfg.data.pixel_scale)
    assert tuple(x.shape[1:]) == (1, 28, 28) and float(x.max()) <= 1.0 and float(x.min()) >= 0


def test_mnist_switch_reads_gz_idx_and_carves_val(tmp_path):
    cfg = compose(["data=mnist", f"data.dir={tmp_path}", "data.val_fraction=0.25"])
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (40, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 40).astype(np.uint8)
    for split, n in (("train", 40), ("test", 8)):
        ip, lp = split_paths(cfg.data, split, existing=False)
        write_idx(ip, imgs[:n])
        write_idx(lp, labels[:n])
    tr, va, te = (load_split(cfg, s) for s in ("train", "val", "test"))
    assert (len(tr), len(va), len(te)) == (30, 10, 8)
    joined = np.concatenate([tr.labels, va.labels])
    assert sorted(joined.tolist()) == sorted(labels.tolist())
    np.testing.assert_array_equal(te.images, imgs[:8])


def test_missing_mnist_files_name_the_file(tmp_path):
    cfg = compose(["data=mnist", f"data.dir={tmp_path}"])
    with pytest.raises(HarnessError, match="data file not found: .*idx3-ubyte"):
        load_split(cfg, "test")


def test_label_image_count_mismatch(tmp_path):
    cfg = compose([f"data.dir={tmp_path}"])
    for split in ("train", "val", "test"):
        ip, lp = split_paths(cfg.data, split, existing=False)
        write_idx(ip, np.zeros((3, 28, 28), np.uint8))
        write_idx(lp, np.zeros(2, np.uint8))
    with pytest.raises(HarnessError, match="3 images.*2 labels"):
        load_split(cfg, "test")
