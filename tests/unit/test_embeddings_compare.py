"""Drift maths on constructed embeddings whose answers are known by construction."""

import numpy as np
import pytest

from harness.config import compose
from harness.embeddings.compare import (
    blowup_problems,
    nearest_neighbours,
    pair_stats,
    threshold_failures,
)


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def th():
    return compose([]).embed.thresholds


def test_identical_embeddings_have_zero_drift():
    a = _unit(np.random.default_rng(0).normal(size=(10, 16)))
    s = pair_stats(a, a.copy())
    assert s.max_norm == 0 and s.max_abs == 0
    assert s.mean_cosine == pytest.approx(1.0) and s.top1_agreement == 1.0


def test_norms_and_percentile_match_definition():
    a = np.zeros((20, 4))
    b = np.zeros((20, 4))
    b[:, 0] = np.arange(20) / 100.0  # ‖Δ_i‖ = i/100
    s = pair_stats(a + [1, 0, 0, 0], b + [1, 0, 0, 0])
    assert s.max_norm == pytest.approx(0.19)
    assert s.mean_norm == pytest.approx(np.mean(np.arange(20) / 100.0))
    assert s.p95_norm == pytest.approx(np.percentile(np.arange(20) / 100.0, 95))
    assert s.max_abs == pytest.approx(0.19)


def test_cosine_of_orthogonal_rows_is_zero():
    a = np.eye(4)
    b = np.roll(np.eye(4), 1, axis=1)
    assert pair_stats(a, b).mean_cosine == pytest.approx(0.0)


def test_nearest_neighbours_and_agreement():
    # two well separated pairs: 0<->1, 2<->3
    a = _unit(np.array([[1, 0.1, 0], [1, 0, 0.1], [0, 1, 0.1], [0.1, 1, 0]], dtype=float))
    assert nearest_neighbours(a).tolist() == [1, 0, 3, 2]
    b = a.copy()
    b[1] = a[2]  # row 1 now sits on row 2: the pairs break up
    assert nearest_neighbours(b).tolist() == [3, 2, 1, 1]
    assert pair_stats(a, b).top1_agreement == 0.0
    c = a.copy()
    c[0] = _unit(np.array([[1, 0.2, 0]]))[0]  # a small move keeps every neighbour
    assert pair_stats(a, c).top1_agreement == 1.0


def test_blowup_detects_nan_bad_norm_and_collapse():
    good = _unit(np.random.default_rng(1).normal(size=(5, 8)))
    assert blowup_problems(good, 1e-3) == []
    bad = good.copy()
    bad[0, 0] = np.nan
    assert "non-finite" in blowup_problems(bad, 1e-3)[0]
    assert "norm off 1" in blowup_problems(good * 1.5, 1e-3)[0]
    assert "identical" in blowup_problems(np.repeat(good[:1], 5, axis=0), 1e-3)[0]


def test_thresholds_by_precision(th):
    a = _unit(np.random.default_rng(2).normal(size=(30, 32)))
    small = _unit(a + 1e-6)
    assert threshold_failures("fp32", pair_stats(small, a), th) == []
    noisy = _unit(a + np.random.default_rng(3).normal(scale=0.05, size=a.shape))
    assert threshold_failures("fp32", pair_stats(noisy, a), th)  # far above 1e-4
    assert threshold_failures("fp16", pair_stats(noisy, a), th)  # mean ‖Δ‖ ~0.28 > 1e-2
    very_noisy = _unit(a + np.random.default_rng(4).normal(scale=0.5, size=a.shape))
    fails = threshold_failures("int8", pair_stats(very_noisy, a), th)
    assert any("cosine" in f for f in fails)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shapes differ"):
        pair_stats(np.zeros((2, 3)), np.zeros((3, 3)))
