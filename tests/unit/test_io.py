"""Atomic output: a failure leaves neither a partial file nor a temp file behind."""

from __future__ import annotations

import pytest

from harness.io import atomic_open, atomic_path


def test_atomic_open_writes_on_success(tmp_path) -> None:
    target = tmp_path / "sub" / "out.csv"
    with atomic_open(target) as fh:
        fh.write("a,b\n")
    assert target.read_text() == "a,b\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.csv"]


def test_atomic_open_keeps_old_content_on_failure(tmp_path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as fh:
            fh.write("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_atomic_path_leaves_nothing_when_block_fails(tmp_path) -> None:
    target = tmp_path / "model.onnx"
    with pytest.raises(ValueError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise ValueError("parity check failed")
    assert list(tmp_path.iterdir()) == []
