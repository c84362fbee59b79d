"""The one preprocessing between raw pixels and the classifier's input.

Training, `harness infer`, the Triton client and the demos all call `to_model_input`, so what the
model sees cannot drift between training and serving (the classic train/serve skew).
"""

from __future__ import annotations

import numpy as np

from harness.errors import HarnessError


def to_model_input(raw: np.ndarray, pixel_scale: float) -> np.ndarray:
    """Raw pixels (N, H, W) or (N, 1, H, W), any numeric dtype -> float32 (N, 1, H, W) / scale."""
    raw = np.asarray(raw)
    if raw.ndim == 3:
        raw = raw[:, None]
    if raw.ndim != 4 or raw.shape[1] != 1:
        raise HarnessError(f"images must be (N, H, W) or (N, 1, H, W) grey pixels, got {raw.shape}")
    if pixel_scale <= 0:
        raise HarnessError(f"pixel_scale must be > 0, got {pixel_scale}")
    return np.ascontiguousarray(raw.astype(np.float32) / np.float32(pixel_scale))
