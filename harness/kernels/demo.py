"""Demo of the C++ cosine kernel: oracle check, single-query retrieval and a timing vs numpy."""

from __future__ import annotations

import time

import numpy as np

from harness.kernels import blas_info, cosine_similarity, paired_cosine_similarity


def _numpy_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float64 normalize + matmul: the independent oracle."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    an = a64 / np.linalg.norm(a64, axis=1, keepdims=True)
    bn = b64 / np.linalg.norm(b64, axis=1, keepdims=True)
    return an @ bn.T


def _best(f: object, repeat: int = 3) -> float:
    """Best wall time of `repeat` calls of f()."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()  # type: ignore[operator]
        best = min(best, time.perf_counter() - t0)
    return best


def run_demo(cfg) -> list[str]:  # noqa: ANN001 - a Hydra DictConfig
    """Check the kernel against numpy float64 and time it; returns summary lines."""
    kc = cfg["kernels"]["demo"] if "kernels" in cfg else cfg["demo"]
    n, m, d = (int(x) for x in kc["shape"])
    rng = np.random.default_rng(int(kc["seed"]))
    a = rng.standard_normal((n, d), dtype=np.float32)
    b = rng.standard_normal((m, d), dtype=np.float32)

    got = cosine_similarity(a, b)
    ref = _numpy_cosine(a, b)
    err = float(np.abs(got - ref).max())
    paired_err = float(np.abs(paired_cosine_similarity(a, b[:n]) - np.diag(ref[:, :n])).max())
    q_err = 0.0
    for i in range(int(kc["queries"])):
        q_err = max(q_err, float(np.abs(cosine_similarity(a[i : i + 1], b)[0] - ref[i]).max()))

    t_ours = _best(lambda: cosine_similarity(a, b))
    t_np = _best(
        lambda: (a / np.linalg.norm(a, axis=1, keepdims=True))
        @ (b / np.linalg.norm(b, axis=1, keepdims=True)).T
    )
    gflops = 2.0 * n * m * d / t_ours / 1e9
    info = blas_info()
    return [
        f"kernels: BLAS {info['blas']} ({info['config']}), {info['threads']} threads",
        f"kernels: cosine_similarity {n}x{m}x{d} float32 max |error| vs numpy float64 = {err:.2e}",
        f"kernels: paired max |error| = {paired_err:.2e}; "
        f"{kc['queries']} single queries max |error| = {q_err:.2e}",
        f"kernels: {t_ours * 1e3:.1f} ms ({gflops:.0f} GFLOP/s) vs numpy normalize+matmul "
        f"{t_np * 1e3:.1f} ms: {t_np / t_ours:.2f}x",
    ]
