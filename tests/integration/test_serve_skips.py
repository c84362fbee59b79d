"""Serving a repository never fails because of models this host cannot load.

A TensorRT model, an ensemble over it (and an ensemble over that ensemble), an ensemble whose
member has no weights yet: each is skipped with its reason, and everything else serves.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient

from harness.config import compose
from harness.paths import ROOT
from harness.services.base import http_ok
from harness.services.triton import make_triton
from harness.serving.golden import GOLDEN_DIR, load_golden, make_fixture_repository
from harness.testing.triton_repos import TRT_CONFIG
from tests.integration._cli import harness_serve

pytestmark = pytest.mark.integration

TRT_REASON = "TensorRT needs an NVIDIA GPU"


def _ensemble(name: str, member: str, inp: str = "images", out: str = "logits") -> str:
    return f"""
name: "{name}"
platform: "ensemble"
max_batch_size: 8
input [ {{ name: "pixels" data_type: TYPE_FP32 dims: [ 1, 28, 28 ] }} ]
output [ {{ name: "scores" data_type: TYPE_FP32 dims: [ 10 ] }} ]
ensemble_scheduling {{ step [ {{
  model_name: "{member}"
  model_version: -1
  input_map {{ key: "{inp}" value: "pixels" }}
  output_map {{ key: "{out}" value: "scores" }}
}} ] }}
"""


def _add(repo: Path, name: str, config: str) -> None:
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "config.pbtxt").write_text(config.strip() + "\n")


def _infer(url: str, model: str, images: np.ndarray, inp: str, out: str) -> np.ndarray:
    client = httpclient.InferenceServerClient(url.split("://", 1)[-1])
    tensor = httpclient.InferInput(inp, list(images.shape), "FP32")
    tensor.set_data_from_numpy(images)
    result = client.infer(model, [tensor], outputs=[httpclient.InferRequestedOutput(out)])
    return result.as_numpy(out)


def test_unloadable_models_are_skipped_and_the_rest_serves(tmp_path: Path) -> None:
    cfg = compose()
    repo = make_fixture_repository(cfg, tmp_path / "repo")  # mnist-onnx with the fixture ONNX
    name = cfg.triton.model_name
    _add(repo, "mnist-trt", TRT_CONFIG)
    (repo / "mnist-trt" / "1" / "model.plan").write_text("a plan needs a GPU")
    _add(repo, "trt-ensemble", _ensemble("trt-ensemble", "mnist-trt"))
    _add(repo, "outer-ensemble", _ensemble("outer-ensemble", "trt-ensemble", "pixels", "scores"))
    _add(repo, "unexported", (repo / name / "config.pbtxt").read_text().replace(name, "unexported"))
    _add(repo, "unexported-ensemble", _ensemble("unexported-ensemble", "unexported"))
    _add(repo, "good-ensemble", _ensemble("good-ensemble", name))

    golden = load_golden()
    images = golden.images[:8].astype(np.float32)
    with make_triton(cfg, "local", repo, work_dir=tmp_path / "work") as server:
        assert sorted(server.models) == ["good-ensemble", name]
        assert server.skipped["mnist-trt"].startswith(TRT_REASON)
        assert server.skipped["trt-ensemble"] == (
            f"member mnist-trt cannot be served here: {server.skipped['mnist-trt']}"
        )
        assert server.skipped["outer-ensemble"].startswith(
            "member trt-ensemble cannot be served here: member mnist-trt"
        )
        assert "no version folder holds model.onnx" in server.skipped["unexported"]
        assert server.skipped["unexported-ensemble"].startswith("member unexported cannot be")
        described = "\n".join(server.describe())
        for skipped, why in server.skipped.items():
            assert f"skipped {skipped}: {why}" in described
        logits = _infer(server.url, name, images, "images", "logits")
        np.testing.assert_allclose(logits, golden.logits[:8], atol=1e-5)
        scores = _infer(server.url, "good-ensemble", images, "pixels", "scores")
        np.testing.assert_allclose(scores, logits, atol=1e-6)


def test_plain_harness_serve_skips_what_cannot_load(tmp_path: Path) -> None:
    """`harness serve` as typed, on a copy of the committed repository with mnist exported."""
    tracked = subprocess.run(
        ["git", "ls-files", "model_repository"], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout: no committed model_repository/ to copy")
    root = tmp_path / "root"  # HARNESS_ROOT: relative paths (the repository, .work) live here
    for rel in tracked:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / rel, root / rel)
    cfg = compose()
    model_dir = root / "model_repository" / cfg.triton.model_name / "1"
    shutil.copyfile(GOLDEN_DIR / "model.onnx", model_dir / "model.onnx")  # as `harness export`
    before = {p: p.stat().st_mtime_ns for p in (root / "model_repository").rglob("*")}

    with harness_serve(
        env={"HARNESS_ROOT": str(root)}, drop=["HARNESS_WORK_DIR"], cwd=root, timeout=300
    ) as served:
        text, http = served.text, served.http
        models = re.search(r"models\s+(.*)", text).group(1).split(", ")
        assert cfg.triton.model_name in models and "minilm-tokenizer" in models
        for trt in ("fp16", "fp32", "int8"):
            assert re.search(rf"skipped minilm-trt-{trt}: {TRT_REASON}", text), text
            assert re.search(
                rf"skipped minilm-trt-{trt}-ensemble: member minilm-trt-{trt} cannot be", text
            )
        assert re.search(r"skipped minilm-onnx-ensemble: member minilm-onnx cannot be", text)
        golden = load_golden()
        logits = _infer(http, cfg.triton.model_name, golden.images[:4], "images", "logits")
        assert (logits.argmax(1) == golden.predicted[:4]).all()
        assert "triton: stopped" in served.interrupt(timeout=60)
        assert not http_ok(http + "/v2/health/ready")
    after = {p: p.stat().st_mtime_ns for p in (root / "model_repository").rglob("*")}
    assert after == before  # serving only reads the repository
