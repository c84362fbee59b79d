"""Bad overrides stop a command as typed, before any work: one line naming key, value, type."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration._cli import harness

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "args,expected",
    [
        (["train", "train.epochs=abc"], "train.epochs=abc: train.epochs expects int (default 12)"),
        (["train", "train.lr=0"], "train.lr=0: expected a value > 0"),
        (["train", "train.epoch=3"], "no key train.epoch in the configuration (train has: epochs"),
        (["files", "build", "{pool}", "--count", "3", "files.pool.count=-5"], "files.pool.count"),
        (
            ["files", "build", "{pool}", "files.pool.max_size=big"],
            "files.pool.max_size expects int",
        ),
        (["tune", "triton.tune.concurrency=0"], "triton.tune.concurrency=0: expected a value >= 1"),
        (["tune", "triton.tune.concurrency_sweep=[1,x]"], "expects a list of int"),
        (["serve", "triton.backend=podman"], "expected one of local, docker, external"),
    ],
)
def test_bad_override_fails_before_work(tmp_path: Path, args: list[str], expected: str) -> None:
    pool = tmp_path / "pool"
    proc = harness(*[a.replace("{pool}", str(pool)) for a in args], timeout=120)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("harness: error: invalid configuration override"), lines[0]
    assert expected in lines[0], lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not pool.exists()  # nothing was built
