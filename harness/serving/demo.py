"""Demo: serve the digit classifier on the real Triton server (local backend) and query it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from omegaconf import DictConfig

from harness.paths import resolve


def _repository(cfg: DictConfig, tmp: Path) -> tuple[Path, str]:
    """The canonical repository when the model is exported, else the fixture model in a copy."""
    from harness.serving.golden import GOLDEN_DIR, make_fixture_repository

    repo = resolve(cfg.triton.repository)
    if (repo / cfg.triton.model_name / "1" / "model.onnx").is_file():
        return repo, "exported model (model_repository/)"
    return (
        make_fixture_repository(cfg, tmp / "repository", GOLDEN_DIR / "model.onnx"),
        "fixture model (untrained; run `harness export` for the trained one)",
    )


def run_demo(cfg: DictConfig) -> list[str]:
    """Start tritonserver, classify the test split over gRPC and HTTP, a short perf_analyzer run."""
    from harness.perf.analyzer import run_perf_analyzer
    from harness.perf.tools import perf_analyzer_problem
    from harness.services.triton import make_triton
    from harness.serving.predict import run_client

    t0 = time.monotonic()
    lines: list[str] = []
    work = resolve(cfg.paths.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="triton-demo.", dir=work))
    try:
        repo, what = _repository(cfg, tmp)
        server = make_triton(cfg, "local", repo, [cfg.triton.model_name], work_dir=tmp / "work")
        with server:
            lines.append(f"triton: local tritonserver 2.51 serving {what}")
            lines.append(f"  HTTP {server.url}  gRPC {server.grpc_url}")
            for protocol in ("grpc", "http"):
                out = run_client(cfg, protocol=protocol, server=server)
                lines += [f"  {protocol}: {ln.strip()}" for ln in out[1:3]]
            if perf_analyzer_problem(cfg) is None:
                p = cfg.triton.perf
                r = run_perf_analyzer(
                    cfg,
                    cfg.triton.model_name,
                    server.grpc_url,
                    concurrency=int(p.concurrency),
                    protocol="grpc",
                    measurement_interval_ms=1000,
                )[0]
                lines.append(
                    f"  perf_analyzer c={r.concurrency}: {r.throughput:.0f} infer/s, "
                    f"p99 {r.p99_ms:.2f} ms"
                )
            else:
                lines.append(f"  perf_analyzer skipped: {perf_analyzer_problem(cfg)}")
            lines += verify_served(cfg, server, repo / cfg.triton.model_name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lines.append(f"  stopped cleanly after {time.monotonic() - t0:.1f}s")
    return lines


def verify_served(cfg: DictConfig, server, model_dir: Path) -> list[str]:
    """`harness verify inference` on the served model, exactly as a user would type it."""
    argv = [
        "harness", "verify", "inference",
        "--url", server.url,
        "--grpc-url", server.grpc_url,
        "--model", cfg.triton.model_name,
        "--onnx", str(model_dir / "1" / "model.onnx"),
        "--config", str(model_dir / "config.pbtxt"),
        "--p99-ms", str(cfg.triton.latency_budget_ms.p99),
    ]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "harness", *argv[1:]], capture_output=True, text=True, timeout=600
    )
    out = proc.stdout.strip().splitlines()
    lines = (
        [f"  $ {' '.join(argv)}"]
        + [f"  {ln}" for ln in out if "FAIL" in ln]
        + [f"  verify: {out[-1] if out else proc.stderr.strip()}"]
    )
    if proc.returncode != 0:
        from harness.errors import HarnessError

        bad = [ln.strip() for ln in out if ln.strip().startswith("FAIL")]
        raise HarnessError(
            f"harness verify inference failed on the served model: {bad[0] if bad else proc.stderr}"
        )
    return lines
