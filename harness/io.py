"""Atomic file output (write to a temporary sibling, rename on success, never leave a partial)
and a lock that serialises the processes building the same file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to `target`; it replaces `target` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(target: str | os.PathLike[str], mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a temporary sibling of `target` for writing; rename it over `target` on success."""
    with atomic_path(target) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing) across processes for the block."""
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # flock goes with the open file: the kernel drops it when the process dies, so a killed
    # holder never leaves a stale lock behind.
    with open(path, "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


PREDICTIONS_HEADER = ("index", "true_label", "predicted_label", "confidence")


def write_predictions(
    target: str | os.PathLike[str], predicted: Any, confidence: Any, labels: Any = None
) -> Path:
    """predictions.csv (index, true_label, predicted_label, confidence), written atomically."""
    import csv

    with atomic_open(target, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(PREDICTIONS_HEADER)
        for i in range(len(predicted)):
            true = "" if labels is None else int(labels[i])
            w.writerow([i, true, int(predicted[i]), f"{float(confidence[i]):.6f}"])
    return Path(target)
