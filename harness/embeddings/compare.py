"""Drift maths: pairwise embedding differences, cosine agreement, nearest-neighbour agreement."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from omegaconf import DictConfig

ORACLE = "oracle"


@dataclass(frozen=True)
class PairStats:
    """How far embeddings `a` are from `b`, sentence by sentence."""

    max_norm: float
    mean_norm: float
    p95_norm: float
    max_abs: float
    mean_cosine: float
    min_cosine: float
    top1_agreement: float

    def as_dict(self) -> dict[str, float]:
        """Plain dict (for JSON and tables)."""
        return asdict(self)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True).clip(min=1e-12)


def nearest_neighbours(emb: np.ndarray) -> np.ndarray:
    """Index of each row's most cosine-similar other row (float64 maths)."""
    u = _unit(emb.astype(np.float64))
    sim = u @ u.T
    np.fill_diagonal(sim, -np.inf)
    return sim.argmax(axis=1)


def pair_stats(a: np.ndarray, b: np.ndarray) -> PairStats:
    """Per-sentence ‖a_i − b_i‖ (max, mean, p95), max |Δ|, cosine and top-1 NN agreement."""
    if a.shape != b.shape:
        raise ValueError(f"embedding shapes differ: {a.shape} vs {b.shape}")
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    norms = np.linalg.norm(a64 - b64, axis=1)
    cos = np.sum(_unit(a64) * _unit(b64), axis=1)
    agree = 1.0
    if len(a) > 2:
        agree = float(np.mean(nearest_neighbours(a64) == nearest_neighbours(b64)))
    return PairStats(
        max_norm=float(norms.max()),
        mean_norm=float(norms.mean()),
        p95_norm=float(np.percentile(norms, 95)),
        max_abs=float(np.abs(a64 - b64).max()),
        mean_cosine=float(cos.mean()),
        min_cosine=float(cos.min()),
        top1_agreement=agree,
    )


def pairwise(embeddings: dict[str, np.ndarray]) -> dict[tuple[str, str], PairStats]:
    """PairStats for every ordered pair of names (the matrix is symmetric up to NN agreement)."""
    names = list(embeddings)
    return {(x, y): pair_stats(embeddings[x], embeddings[y]) for x in names for y in names}


def blowup_problems(emb: np.ndarray, tolerance: float) -> list[str]:
    """Why embeddings are unusable: non-finite values, norms off 1, identical rows."""
    problems = []
    if not np.isfinite(emb).all():
        problems.append(f"{int((~np.isfinite(emb)).sum())} non-finite values")
        return problems
    norms = np.linalg.norm(emb.astype(np.float64), axis=1)
    off = np.abs(norms - 1.0) > tolerance
    if off.any():
        problems.append(f"{int(off.sum())} embeddings with norm off 1 (e.g. {norms[off][0]:.4g})")
    if len(emb) > 1 and np.allclose(emb, emb[0:1], atol=1e-6):
        problems.append("all embeddings are identical (collapsed)")
    return problems


@dataclass(frozen=True)
class ThresholdMiss:
    """One drift threshold missed: which metric, its value, the limit and the comparison."""

    metric: str  # a PairStats field: max_abs | mean_norm | mean_cosine | top1_agreement
    label: str
    value: float
    limit: float
    op: str  # how `value` must relate to `limit` to pass: "<=" or ">="

    def text(self) -> str:
        """`mean cosine 0.9512 < 0.98` (the value, the broken relation, the limit)."""
        broken = ">" if self.op == "<=" else "<"
        fmt = {"mean_cosine": ".4f", "top1_agreement": ".3f"}.get(self.metric, ".3g")
        return f"{self.label} {self.value:{fmt}} {broken} {self.limit}"


def threshold_misses(precision: str, s: PairStats, th: DictConfig) -> list[ThresholdMiss]:
    """Thresholds of configs/embed (by precision) that `s` (vs oracle) misses, as records."""
    check = th.by_precision[precision]
    out = []
    if check == "exact" and not s.max_abs <= th.exact_max_abs:
        out.append(ThresholdMiss("max_abs", "max |Δ|", s.max_abs, th.exact_max_abs, "<="))
    if check == "fp16" and not s.mean_norm <= th.fp16_mean_norm:
        out.append(ThresholdMiss("mean_norm", "mean ‖Δ‖", s.mean_norm, th.fp16_mean_norm, "<="))
    if check == "int8":
        if not s.mean_cosine >= th.int8_mean_cosine:
            out.append(
                ThresholdMiss(
                    "mean_cosine", "mean cosine", s.mean_cosine, th.int8_mean_cosine, ">="
                )
            )
        if not s.top1_agreement >= th.int8_top1:
            out.append(
                ThresholdMiss(
                    "top1_agreement", "top-1 NN agreement", s.top1_agreement, th.int8_top1, ">="
                )
            )
    return out


def threshold_failures(precision: str, s: PairStats, th: DictConfig) -> list[str]:
    """Thresholds of configs/embed (by the format's precision) that `s` (vs oracle) misses."""
    return [m.text() for m in threshold_misses(precision, s, th)]


def threshold_text(precision: str, th: DictConfig) -> str:
    """The threshold that applies to a precision, as text for the report."""
    check = th.by_precision[precision]
    if check == "exact":
        return f"max abs ≤ {th.exact_max_abs:g}"
    if check == "fp16":
        return f"mean ‖Δ‖ ≤ {th.fp16_mean_norm:g}"
    return f"mean cos ≥ {th.int8_mean_cosine:g}, top-1 ≥ {th.int8_top1:.0%}"
