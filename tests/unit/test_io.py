"""Atomic output: a failure leaves neither a partial file nor a temp file behind; the build lock
serialises processes and dies with its holder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from harness.io import atomic_open, atomic_path, file_lock

# A second process takes the lock, says so, then logs after holding it for a while.
HOLDER = """
import sys, time
from pathlib import Path
from harness.io import file_lock
lock, ready, log, hold = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), float(sys.argv[4])
with file_lock(lock):
    ready.write_text("held")
    time.sleep(hold)
    with open(log, "a") as fh:
        fh.write("holder\\n")
"""


def _holder(tmp_path, hold: float) -> tuple[subprocess.Popen, str]:
    ready = tmp_path / "ready"
    args = [str(tmp_path / "x.lock"), str(ready), str(tmp_path / "log"), str(hold)]
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, *args])
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "holder never took the lock"
        time.sleep(0.02)
    return proc, args[0]


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


def test_file_lock_waits_for_the_other_process(tmp_path) -> None:
    proc, lock = _holder(tmp_path, hold=0.5)
    with file_lock(lock):
        with open(tmp_path / "log", "a") as fh:
            fh.write("waiter\n")
    assert proc.wait(timeout=60) == 0
    # Without the lock the waiter would have written first: the holder was still sleeping.
    assert (tmp_path / "log").read_text().split() == ["holder", "waiter"]


def test_file_lock_is_released_when_its_holder_is_killed(tmp_path) -> None:
    proc, lock = _holder(tmp_path, hold=600)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    t0 = time.monotonic()
    with file_lock(lock):
        pass
    assert time.monotonic() - t0 < 30
    assert not (tmp_path / "log").exists()
