"""The committed Triton golden fixture (fixtures/triton) is reproducible from its provenance."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from harness.paths import ROOT
from harness.serving.golden import GOLDEN_DIR

SCRIPT = ROOT / "fixtures" / "triton" / "make_golden.py"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_recorded_hashes_are_the_committed_files() -> None:
    provenance = json.loads((GOLDEN_DIR / "provenance.json").read_text())
    for name, digest in provenance["sha256"].items():
        assert _sha256(GOLDEN_DIR / name) == digest, f"{name} changed without its provenance"


def test_fixture_rebuilt_from_its_provenance_matches_the_committed_one(tmp_path: Path) -> None:
    # As a user rebuilds it: the script in a subprocess, the recorded config as overrides.
    res = subprocess.run(
        [sys.executable, str(SCRIPT), "--from-provenance", str(GOLDEN_DIR / "provenance.json")]
        + ["--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    # torch's TorchScript exporter is deterministic for a seeded model: bytes must match.
    assert (tmp_path / "model.onnx").read_bytes() == (GOLDEN_DIR / "model.onnx").read_bytes()
    got, want = np.load(tmp_path / "golden.npz"), np.load(GOLDEN_DIR / "golden.npz")
    assert sorted(got.files) == sorted(want.files)
    for key in ("images", "labels", "predicted"):
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    np.testing.assert_allclose(got["logits"], want["logits"], rtol=0, atol=1e-6)
    rebuilt = json.loads((tmp_path / "provenance.json").read_text())
    recorded = json.loads((GOLDEN_DIR / "provenance.json").read_text())
    assert rebuilt["model_config"] == recorded["model_config"]
    assert rebuilt["opset"] == recorded["opset"]
    # The rebuilt provenance records the overrides it was made with: rebuilding from it is exact.
    assert any(o.startswith("model.blocks=") for o in rebuilt["overrides"])
