"""Cosine similarity between sets of vectors: a C++ kernel over OpenBLAS, bound with pybind11.

``CosineIndex(vectors)`` (harness/kernels/index.py) prepares a set once for exact top-k search.
``cosine_similarity(a, b)`` is the (N, M) matrix of cosines between the rows of ``a`` (N, D) and
``b`` (M, D); ``paired_cosine_similarity(a, b)`` the (N,) cosines of matching rows. Semantics
(docs/kernels.md): float32 stays float32, anything else real is computed in float64 (mixed
inputs are promoted like numpy does); a zero vector has cosine 0 with everything; NaN/inf in a
row make that row's (or column's) results NaN and nothing else; results are clipped to [-1, 1];
the GIL is released while the kernel runs.
"""

from __future__ import annotations

import numpy as np

from harness.kernels._native import _cosine, _matrix

__all__ = ["cosine_similarity", "paired_cosine_similarity", "blas_info", "CosineIndex"]

BLAS: str = _cosine.BLAS
# Output rows per BLAS call are chosen so one block of the output is at most this many bytes;
# each block is scaled right after BLAS wrote it, while it is still in cache (0: one call).
BLOCK_BYTES: int = 0
# Memory-bound passes over at least this many elements (the in-place scaling of an N x M
# output; the fused pass over a set of vectors against one vector) are split over OpenBLAS's
# thread count. Below it, starting the extra thread costs more than the second core saves:
# one query against 10000 x 384 took 0.46 ms serial vs 0.53 ms split, 30000 x 384 1.61 vs
# 1.72 ms; 100000 x 384 (38M elements) 6.7 vs 5.9 ms.
PARALLEL_MIN_ELEMENTS: int = 1 << 24
# Problems of at most this many multiply-adds (N*M*D) run their BLAS product on the calling
# thread: below it, waking OpenBLAS's threads costs more than they save (measured on 2 cores:
# 64x64x128 took 15.6 us on one thread and 13-25 us on two, depending on whether the second
# core was idle; from about 128x128x128 two threads win).
SERIAL_MAX_MNK: int = 1 << 20

_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)


def _result_dtype(a: np.ndarray, b: np.ndarray) -> np.dtype:
    """float32 when both inputs fit in float32 exactly, else float64 (numpy promotion)."""
    if a.dtype is _F32 and b.dtype is _F32:
        return _F32
    dt = np.result_type(a.dtype, b.dtype, _F32)
    if dt != _F32 and dt != _F64:  # float128: no BLAS for it
        raise TypeError(f"unsupported dtypes {a.dtype} and {b.dtype}: result would be {dt}")
    return dt


def _cast(x: np.ndarray, dt: np.dtype) -> np.ndarray:
    """`x` in the native-endian dtype `dt` (a copy only when the dtype differs)."""
    return x if x.dtype == dt and x.dtype.isnative else x.astype(dt)


def cosine_similarity(
    a: np.ndarray, b: np.ndarray | None = None, *, out: np.ndarray | None = None
) -> np.ndarray:
    """(N, M) cosines between the rows of a (N, D) and b (M, D, default a); see module doc."""
    a = _matrix(a, "a")
    b = a if b is None else _matrix(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"a has shape {a.shape} and b has shape {b.shape}: the vector sizes (D) differ"
        )
    dt = _result_dtype(a, b)
    same = a is b
    a = _cast(a, dt)
    b = a if same else _cast(b, dt)
    shape = (a.shape[0], b.shape[0])
    if out is None:
        out = np.empty(shape, dt)
    else:
        _check_out(out, shape, dt, a, b)
    _cosine.cosine(a, b, out, BLOCK_BYTES, PARALLEL_MIN_ELEMENTS, SERIAL_MAX_MNK)
    return out


def _check_out(out: object, shape: tuple[int, ...], dt: np.dtype, *inputs: np.ndarray) -> None:
    """Reject an `out` that is not a writable C-contiguous `shape` array of `dt`."""
    if type(out) is not np.ndarray:
        raise TypeError(f"out must be a numpy array, got {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"out has shape {out.shape}; the result has shape {shape}")
    if out.dtype != dt or not out.dtype.isnative:
        raise TypeError(f"out has dtype {out.dtype}; the result dtype is {dt} (shape {shape})")
    if not out.flags.c_contiguous or not out.flags.writeable or not out.flags.aligned:
        raise ValueError(f"out (shape {out.shape}) must be writable, aligned and C-contiguous")
    if any(np.may_share_memory(out, x) for x in inputs):
        raise ValueError(f"out (shape {out.shape}) overlaps an input")


def paired_cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) cosines between row i of a and row i of b, both (N, D); see module doc."""
    a = _matrix(a, "a")
    b = _matrix(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a has shape {a.shape} and b has shape {b.shape}: shapes must match")
    dt = _result_dtype(a, b)
    a = _cast(a, dt)
    b = _cast(b, dt)
    out = np.empty(a.shape[0], dt)
    _cosine.paired(a, b, out)
    return out


def blas_info() -> dict[str, object]:
    """Which BLAS the extension was built against, its configuration and thread count."""
    return {"blas": BLAS, "config": _cosine.blas_config(), "threads": _cosine.blas_threads()}


from harness.kernels.index import CosineIndex  # noqa: E402  (after the functions it shares)
