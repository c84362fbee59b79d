"""The compiled extension, loaded with the right OpenBLAS kernels, and the shared argument check.

Both the functions of `harness.kernels` and `CosineIndex` import from here, so neither needs the
other to be loaded first.
"""

from __future__ import annotations

import numpy as np

from harness.kernels.coretype import coretype_env

with coretype_env():  # OpenBLAS reads its kernel family once, when it loads
    try:  # Loads libscipy_openblas.so with RTLD_GLOBAL: the extension links to it by soname.
        import scipy_openblas32  # noqa: F401
    except ImportError:  # a build against the system's libopenblas does not need it
        pass

    from harness.kernels import _cosine  # noqa: F401  (re-exported to the package and index)

_REAL_KINDS = frozenset("biuf")


def _matrix(x: object, name: str) -> np.ndarray:
    """`x` as a 2-D real ndarray, or a ValueError/TypeError naming the problem."""
    arr = x if type(x) is np.ndarray else np.asarray(x)
    if arr.dtype.kind not in _REAL_KINDS:
        raise TypeError(
            f"{name} has dtype {arr.dtype} (shape {arr.shape}); expected a real numeric dtype, "
            "computed as float32 or float64"
        )
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (vectors as rows), got shape {arr.shape}")
    return arr
