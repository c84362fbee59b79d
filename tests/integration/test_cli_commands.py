"""Commands run as a user types them (subprocesses), each checked against an oracle.

Covers what no other test ran this way: `data prepare|describe`, `tools install|check`,
`files nginx-config`, `stack nginx-conf`, plain `harness train`, `harness demo --only ...` and
`HARNESS_TRACEBACK=1`. Outputs go to temporary folders (HARNESS_WORK_DIR, path overrides).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from sklearn.datasets import load_digits

from harness.config import compose
from harness.data.loader import load_split
from harness.paths import ROOT, resolve
from harness.perf.tools import perf_analyzer_path
from tests.integration._cli import harness, ok

pytestmark = pytest.mark.integration


def test_data_prepare_force_and_describe(tmp_path: Path) -> None:
    d = tmp_path / "digits"
    out = ok(harness("data", "prepare", f"data.dir={d}")).stdout
    files = sorted(p.name for p in d.iterdir())
    assert files and all(name in out for name in files), (files, out)
    before = {p.name: p.stat().st_mtime_ns for p in d.iterdir()}
    time.sleep(0.01)
    ok(harness("data", "prepare", "--force", f"data.dir={d}"))  # option before the overrides
    assert all(p.stat().st_mtime_ns > before[p.name] for p in d.iterdir()), "not rebuilt"
    text = ok(harness("data", "describe", f"data.dir={d}")).stdout
    sizes = {
        m[0]: int(m[1]) for m in re.findall(r"^\s*(train|val|test):\s+(\d+) images", text, re.M)
    }
    # Oracle: scikit-learn's own count of the digits, and the loader's split sizes.
    assert sum(sizes.values()) == len(load_digits().target), text
    cfg = compose([f"data.dir={d}"])
    assert sizes == {s: len(load_split(cfg, s).labels) for s in ("train", "val", "test")}
    per_class = re.search(r"test:.*per class ([\d ]+)$", text, re.M).group(1).split()
    assert [int(c) for c in per_class] == np.bincount(load_split(cfg, "test").labels).tolist()


def test_tools_install_is_idempotent_and_check_finds_what_runs(tmp_path: Path) -> None:
    exe = perf_analyzer_path(compose([]))
    first = ok(harness("tools", "install", timeout=600)).stdout
    assert "perf_analyzer: ok" in first and exe.is_file()
    mtime = exe.stat().st_mtime_ns
    ok(harness("tools", "install", timeout=600))
    assert exe.stat().st_mtime_ns == mtime, "a second install rewrote the binary"
    assert "perf_analyzer: ok" in ok(harness("tools", "check")).stdout
    # Oracle: the binary itself runs (perf_analyzer prints its usage for --help).
    res = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=30)
    assert "perf_analyzer" in (res.stdout + res.stderr)
    # And check bites: an empty tools folder is reported and fails.
    res = harness("tools", "check", f"perf.perf_analyzer.tools_dir={tmp_path / 'none'}")
    assert res.returncode == 1 and "NOT usable" in res.stdout and "not installed" in res.stdout


def test_files_nginx_config_local_passes_nginx_t_and_container_is_the_committed_one(
    tmp_path: Path,
) -> None:
    cfg = compose([])
    container = ok(harness("files", "nginx-config", "--container")).stdout
    assert container == resolve(cfg.stack.nginx_conf).read_text(encoding="utf-8")
    pool = tmp_path / "pool"
    pool.mkdir()
    run = tmp_path / "work"
    local = ok(
        harness("files", "nginx-config", str(pool), "--port", "18123", f"paths.work_dir={run}")
    ).stdout
    assert re.search(r"listen\s+[\d.:]*18123\b", local) and str(pool) in local
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else "")
    if not nginx:
        pytest.skip("nginx is not installed (Debian nginx-light): `nginx -t` not run")
    # The server makes its runtime folder before starting nginx; `nginx -t` needs it too.
    for path in re.findall(r'^\s*(?:pid|error_log)\s+"?([^";\s]+)', local, re.M):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    for path in re.findall(r"^\s*\w+_temp_path\s+([^;\s]+);", local, re.M):
        Path(path).mkdir(parents=True, exist_ok=True)
    conf = tmp_path / "nginx.conf"
    conf.write_text(local)
    res = subprocess.run(
        [nginx, "-t", "-c", str(conf), "-p", str(tmp_path)], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr


def test_stack_nginx_conf_renders_the_committed_file(tmp_path: Path) -> None:
    out = tmp_path / "files.conf"
    text = ok(harness("stack", "nginx-conf", f"stack.nginx_conf={out}")).stdout
    assert str(out) in text
    assert out.read_text() == (ROOT / compose([]).stack.nginx_conf).read_text()


def test_traceback_env_shows_the_traceback_only_when_asked() -> None:
    args = ("client", "--url", "127.0.0.1:1", "--model", "x")
    plain = harness(*args, timeout=120)
    assert plain.returncode != 0 and "Traceback" not in plain.stderr
    assert len(plain.stderr.strip().splitlines()) == 1 and "not reachable" in plain.stderr
    full = harness(*args, timeout=120, env={"HARNESS_TRACEBACK": "1"})
    assert full.returncode == plain.returncode
    assert "Traceback (most recent call last)" in full.stderr and "not reachable" in full.stderr


def test_plain_train_logs_to_its_own_mlflow_and_reports_onnx_accuracy(tmp_path: Path) -> None:
    # As typed, bar one epoch and temp output folders: no tracking URI, logging on.
    art = tmp_path / "artifacts"
    res = ok(
        harness(
            "train",
            "train.epochs=1",
            f"paths.artifacts_dir={art}",
            timeout=600,
            env={"HARNESS_WORK_DIR": str(tmp_path / "work")},
        )
    )
    out = res.stdout + res.stderr
    assert "mlflow-tracking ready at http://127.0.0.1:" in out  # it started its own server
    acc = re.search(r"test accuracy: ([0-9.]+)", out).group(1)
    # Oracle: onnxruntime on the exported file, on the test split read in-process.
    cfg = compose([])
    split = load_split(cfg, "test")
    images = split.images.astype(np.float32)[:, None] / float(cfg.data.pixel_scale)
    sess = ort.InferenceSession(str(art / "model.onnx"), providers=["CPUExecutionProvider"])
    pred = sess.run(["logits"], {"images": images})[0].argmax(1)
    assert acc == f"{(pred == split.labels).mean():.4f}", out[-2000:]
    run_id = re.search(r"mlflow run: ([0-9a-f]{32})", out).group(1)
    assert run_id in (art / "mlflow_run.json").read_text()
    # The MLflow server it started is gone once the command returned.
    left = subprocess.run(
        ["pgrep", "-f", f"mlflow.*{tmp_path}"], capture_output=True, text=True
    ).stdout.split()
    assert left == []


def test_demo_cheap_steps_end_to_end(tmp_path: Path) -> None:
    """`harness demo --only kernels,files`: the demo's own oracle checks pass, as typed."""
    start = time.monotonic()
    res = harness(
        "demo", "--only", "kernels,files", timeout=600, env={"HARNESS_WORK_DIR": str(tmp_path)}
    )
    took = time.monotonic() - start
    ok(res)
    out = res.stdout + res.stderr
    assert "demo: all 2 steps passed" in out, out[-3000:]
    assert re.search(r"ok\s+kernels\s", out) and re.search(r"ok\s+files\s", out)
    # The kernel step checks itself against numpy in float64; its error is the oracle's verdict.
    err = float(re.search(r"max \|error\| vs numpy float64 = ([0-9.e+-]+)", out).group(1))
    assert err < 1e-5, out
    assert re.search(r"(\d+) files served by \w+ at .*all sha256 match", out)
    print(f"\nharness demo --only kernels,files: {took:.0f} s")


def test_embed_text_prints_what_sentence_transformers_computes(embed_conversions) -> None:
    from harness.embeddings.model import model_path
    from harness.embeddings.oracle import oracle_embed

    cfg = compose([])
    texts = ["The cat sat on the mat.", "Embeddings map sentences to vectors."]
    res = ok(
        harness(
            "embed",
            "text",
            "--formats",
            "onnx,openvino",
            "--text",
            texts[0],
            "--text",
            texts[1],
            "--no-convert",
            timeout=600,
        )
    )
    got = json.loads(res.stdout[res.stdout.index("{") : res.stdout.rindex("}") + 1])
    want = oracle_embed(str(model_path(cfg.embed.model.package)), texts)[:, :8]
    assert sorted(got) == ["onnx", "openvino"]
    for fmt, rows in got.items():
        diff = np.abs(np.array(rows) - want).max()
        assert diff <= float(cfg.embed.thresholds.exact_max_abs), (fmt, diff)


def test_embed_perf_measures_every_configured_point(embed_conversions, tmp_path: Path) -> None:
    res = ok(
        harness(
            "embed",
            "perf",
            "--formats",
            "onnx",
            "--no-convert",
            "embed.perf.seq_lengths=[32]",
            "embed.perf.concurrency=[1,2]",
            "embed.perf.measurement_interval_ms=500",
            "embed.perf.inprocess_repeats=1",
            f"embed.reports_dir={tmp_path}",
            timeout=900,
            env={"HARNESS_WORK_DIR": str(tmp_path / "work")},
        )
    )
    rows = re.findall(r"^(\S+)\s+seq=(\d+)\s+c=(\d+)\s+([\d.]+) infer/s", res.stdout, re.M)
    assert sorted((f, int(s), int(c)) for f, s, c, _ in rows) == [("onnx", 32, 1), ("onnx", 32, 2)]
    assert all(float(tp) > 0 for *_, tp in rows), rows  # each point was really served
    report = Path(re.search(r"^report: (\S+)", res.stdout, re.M).group(1))
    assert report.is_file() and report.parent == tmp_path
