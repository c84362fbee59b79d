"""Side-by-side benchmark of the cosine kernel against numpy, torch and scikit-learn.

Rounds are interleaved: each round runs every implementation once (`calls_per_round` calls),
rotating the order. Floors are judged on the median over rounds of the ratio measured within
each round (load from other processes then slows both sides of a ratio alike); the table shows
each implementation's best round. The implementations
that floors are set against (ours, numpy, numpy's bare sgemm) run every round; the others
(torch, scikit-learn: reported only) run in the first `extra_rounds` rounds.

Before each timed batch the benchmark sleeps `settle_s`: OpenBLAS workers keep spinning for
about 2^28 cycles (~0.1 s) after a call, and numpy, torch and this kernel each have their own
thread pool, so without the pause an implementation would be timed while the previous one's
idle workers still burn the two cores (a bias against whichever library differs from the one
before it, not a property of either).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from harness.kernels import cosine_similarity

HARNESS = "harness"
NUMPY = "numpy normalize+matmul"
SGEMM = "numpy bare sgemm (a @ b.T)"
CORE = (HARNESS, NUMPY, SGEMM)


@dataclass
class CaseResult:
    """Seconds per call of each implementation for one (N, M, D) case: per round and best."""

    name: str
    shape: tuple[int, int, int]
    best: dict[str, float] = field(default_factory=dict)
    rounds: int = 0
    times: dict[str, list[float]] = field(default_factory=dict)  # one entry per round run

    def round_ratios(self, other: str, impl: str = HARNESS) -> list[float]:
        """time(other) / time(impl) within each round both ran in."""
        return [o / i for o, i in zip(self.times[other], self.times[impl])]

    def median_ratio(self, other: str, impl: str = HARNESS) -> float:
        """Median over rounds of time(other) / time(impl): how many times faster impl is."""
        return statistics.median(self.round_ratios(other, impl))

    @property
    def flops(self) -> float:
        """Floating-point operations of the dot products: 2 N M D."""
        n, m, d = self.shape
        return 2.0 * n * m * d

    def speedup(self, other: str, impl: str = HARNESS) -> float:
        """time(other) / time(impl): how many times faster impl is."""
        return self.best[other] / self.best[impl]

    def rows(self) -> list[tuple[str, float, float, float]]:
        """(implementation, ms per call, GFLOP/s, speed relative to numpy) per implementation."""
        base = self.best[NUMPY]
        return [
            (k, t * 1e3, self.flops / t / 1e9, base / t)
            for k, t in sorted(self.best.items(), key=lambda kv: kv[1])
        ]


def _normalize_np(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit norm (zero rows stay zero), numpy's idiom."""
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n == 0, 1, n)


def implementations(a: np.ndarray, b: np.ndarray) -> dict[str, Callable[[], object]]:
    """The competitors on the same inputs: ours, numpy, bare sgemm, torch, scikit-learn."""
    impls: dict[str, Callable[[], object]] = {
        HARNESS: lambda: cosine_similarity(a, b),
        NUMPY: lambda: _normalize_np(a) @ _normalize_np(b).T,
        SGEMM: lambda: a @ b.T,
    }
    try:
        from sklearn.metrics.pairwise import cosine_similarity as sk

        impls["sklearn cosine_similarity"] = lambda: sk(a, b)
    except ImportError:  # pragma: no cover - sklearn is a dependency
        pass
    try:
        import torch
        import torch.nn.functional as F

        ta, tb = torch.from_numpy(a), torch.from_numpy(b)

        def torch_mm() -> object:
            with torch.no_grad():
                return F.normalize(ta, dim=1) @ F.normalize(tb, dim=1).T

        impls["torch normalize+mm"] = torch_mm
        if a.shape[0] == 1:

            def torch_cos() -> object:
                with torch.no_grad():
                    return F.cosine_similarity(ta, tb, dim=1)

            impls["torch F.cosine_similarity"] = torch_cos
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return impls


def measure(
    name: str,
    a: np.ndarray,
    b: np.ndarray,
    calls_per_round: int,
    rounds: int,
    result: CaseResult | None = None,
    extra_rounds: int = 0,
    settle_s: float = 0.0,
    best_of: int = 1,
) -> CaseResult:
    """Run `rounds` more interleaved rounds; keep each implementation's best time per call.

    Within a round each implementation runs `best_of` batches of `calls_per_round` calls back
    to back and the round keeps its fastest batch: on a shared VM a batch can only be slowed
    (preempted), never sped up, so the fastest of a few is the round's estimate of its speed.
    """
    impls = implementations(a, b)
    res = result or CaseResult(name, (a.shape[0], b.shape[0], a.shape[1]))
    if result is None:
        for f in impls.values():  # warm-up: thread pools, page faults, lazy imports
            f()
    for r in range(rounds):
        done = res.rounds + r
        names = [k for k in impls if k in CORE or done < extra_rounds]
        k = done % len(names)
        for key in names[k:] + names[:k]:
            f = impls[key]
            time.sleep(settle_s)
            dt = float("inf")
            for _ in range(max(1, best_of)):
                t0 = time.perf_counter()
                for _ in range(calls_per_round):
                    f()
                dt = min(dt, (time.perf_counter() - t0) / calls_per_round)
            res.best[key] = min(dt, res.best.get(key, float("inf")))
            res.times.setdefault(key, []).append(dt)
    res.rounds += rounds
    return res


def table(results: list[CaseResult]) -> str:
    """Markdown table: case, implementation, time per call, GFLOP/s, speed vs numpy."""
    lines = [
        "| case (N x M x D, float32) | implementation | time / call | GFLOP/s | vs numpy |",
        "|---|---|---:|---:|---:|",
    ]
    for res in results:
        n, m, d = res.shape
        for impl, ms, gflops, rel in res.rows():
            t = f"{ms:.3f} ms" if ms >= 0.1 else f"{ms * 1e3:.1f} us"
            label = f"{res.name} ({n} x {m} x {d})"
            lines.append(f"| {label} | {impl} | {t} | {gflops:.1f} | {rel:.2f}x |")
    return "\n".join(lines)
