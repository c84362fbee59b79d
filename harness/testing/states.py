"""Comparing training states tensor by tensor (resume exactness tests)."""

from __future__ import annotations

from typing import Any

import torch


def flat_tensors(obj: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor in a nested state (dicts, lists, tuples), keyed by its path."""
    if isinstance(obj, torch.Tensor):
        return {prefix: obj}
    out: dict[str, torch.Tensor] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flat_tensors(v, f"{prefix}/{k}"))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(flat_tensors(v, f"{prefix}/{i}"))
    return out


def assert_bit_identical(a: Any, b: Any) -> None:
    """Assert two states hold the same tensors, bit for bit (and at least one)."""
    fa, fb = flat_tensors(a), flat_tensors(b)
    assert fa.keys() == fb.keys() and fa
    for k in fa:
        assert torch.equal(fa[k], fb[k]), f"{k} differs"
