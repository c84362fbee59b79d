"""Exact cosine top-k against a set prepared once: ``CosineIndex`` (C++, harness/kernels/csrc).

The set is normalised once and stored row-major in an aligned C++ buffer (float32, or float16
with float32 accumulation). ``search`` streams it in blocks and keeps the k best per query in
C++, so the (N, M) matrix is never formed; ``similarity`` returns that matrix when it is wanted.
Semantics (docs/kernels.md): scores are cosines clipped to [-1, 1], best first, equal scores in
increasing id order; a zero vector scores 0 against everything; a vector holding NaN/inf scores
NaN, and NaN ranks after every number. Computation is float32 whatever the input dtype.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Mapping

import numpy as np

from harness.kernels._native import _cosine, _matrix  # the checks of cosine_similarity

__all__ = ["CosineIndex", "DTYPES", "ISA"]

# The dot loops in use: "avx512", "avx2" or "scalar" (HARNESS_KERNELS_ISA can force a narrower one).
ISA: str = _cosine.index_isa()

# Storage dtypes: the bytes a search streams per element (float16 halves them; recall@k against
# float32 storage is measured in tests/perf/test_cosine_index_perf.py).
DTYPES = {"float32": False, "float16": True}
_OPTION_KEYS = (
    "block_rows",
    "query_block",
    "parallel_min_work",
    "chunk_rows",
    "threads",
)


@functools.lru_cache(maxsize=1)
def _default_options() -> tuple[tuple[str, int], ...]:
    """The scan options of configs/kernels/default.yaml (kernels.index.search), read once."""
    from harness.config import compose

    search = compose()["kernels"]["index"]["search"]
    return tuple((key, int(search[key])) for key in _OPTION_KEYS)


def search_options(options: Mapping[str, int] | None = None) -> _cosine.SearchOptions:
    """C++ scan options from a mapping like kernels.index.search (None: the composed defaults)."""
    values = dict(_default_options()) if options is None else {}
    if options is not None:
        unknown = set(options) - set(_OPTION_KEYS)
        if unknown:
            raise ValueError(
                f"unknown CosineIndex options {sorted(unknown)}; known: {list(_OPTION_KEYS)}"
            )
        values = {**dict(_default_options()), **{k: int(v) for k, v in options.items()}}
    opt = _cosine.SearchOptions()
    for key, value in values.items():
        setattr(opt, key, value)
    return opt


_F32 = np.dtype(np.float32)


def _vectors(x: object, name: str, dim: int | None) -> np.ndarray:
    """`x` as a non-empty 2-D float32/float64 array of `dim` columns, or a one-line error."""
    # The common case passes through without the general checks below (~5 us of a single-query
    # search of 10,000 vectors that streams in ~0.3 ms).
    if (
        type(x) is np.ndarray
        and x.dtype is _F32
        and x.ndim == 2
        and x.shape[0] > 0
        and x.shape[1] > 0
        and (dim is None or x.shape[1] == dim)
    ):
        return x
    arr = _matrix(x, name)
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}): give at least one vector of D > 0")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"{name} has shape {arr.shape}; the index holds vectors of D = {dim}")
    dt = np.result_type(arr.dtype, np.float32)
    if dt != np.float32 and dt != np.float64:  # float128: no exact conversion
        raise TypeError(
            f"{name} has dtype {arr.dtype} (shape {arr.shape}); expected a real dtype up to float64"
        )
    return arr if arr.dtype == dt and arr.dtype.isnative else arr.astype(dt)


class CosineIndex:
    """Exact cosine top-k over a set normalised and stored once in C++ (see module doc)."""

    def __init__(
        self,
        vectors: np.ndarray,
        *,
        dtype: str = "float32",
        options: Mapping[str, int] | None = None,
    ) -> None:
        """Normalise and store `vectors` (M, D); dtype "float32" or "float16" storage."""
        if dtype not in DTYPES:
            raise ValueError(f"dtype={dtype!r}: expected one of {sorted(DTYPES)}")
        arr = _vectors(vectors, "vectors", None)
        self._dtype = dtype
        self._options = search_options(options)
        self._index = _cosine.Index(arr.shape[1], DTYPES[dtype])
        self._index.add(arr)

    def add(self, vectors: np.ndarray) -> None:
        """Append `vectors` (M', D): they get ids len(self) .. len(self) + M' - 1."""
        self._index.add(_vectors(vectors, "vectors", self.dim))

    def __len__(self) -> int:
        """Number of stored vectors."""
        return self._index.size

    def __repr__(self) -> str:
        """Size, dimension and storage."""
        return f"CosineIndex({len(self)} x {self.dim}, dtype={self._dtype})"

    @property
    def dim(self) -> int:
        """The vector size D."""
        return self._index.dim

    @property
    def dtype(self) -> str:
        """Storage dtype: "float32" or "float16"."""
        return self._dtype

    @property
    def nbytes(self) -> int:
        """Bytes of the stored set (rows padded to a multiple of 16 elements)."""
        return self._index.nbytes

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores float32 (N, k), ids int64 (N, k)): the k most similar rows, best first."""
        try:
            k = operator.index(k)
        except TypeError:
            raise TypeError(f"k must be an integer, got {type(k).__name__}") from None
        index = self._index
        if k < 1 or k > index.size:
            raise ValueError(f"k = {k}: expected 1 <= k <= {index.size} (the vectors in the index)")
        return index.search(_vectors(queries, "queries", index.dim), k, self._options)

    def similarity(self, queries: np.ndarray) -> np.ndarray:
        """(N, len(self)) float32 cosines of every query with every stored vector."""
        q = _vectors(queries, "queries", self.dim)
        out = np.empty((q.shape[0], len(self)), np.float32)
        self._index.similarity(q, out, self._options)
        return out

    def threads(self, queries: int = 1) -> int:
        """Threads a search of this many queries uses (the set is split between them)."""
        return self._index.threads(queries, self._options)
