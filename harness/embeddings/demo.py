"""Demo: convert MiniLM (cached), serve the formats with Triton, compare them with the oracle."""

from __future__ import annotations

import time

from omegaconf import DictConfig

from harness.paths import resolve
from harness.services.base import running


def run_demo(cfg: DictConfig) -> list[str]:
    """Convert embed.demo_formats, serve them (tokenizer + ensembles), compare, stop the server."""
    from harness.embeddings.convert import convert_formats
    from harness.embeddings.report import write_report
    from harness.embeddings.repository import write_configs
    from harness.embeddings.serving import compare_served, make_server, servable_formats
    from harness.serving.client import TritonClient

    t0 = time.monotonic()
    formats = list(cfg.embed.demo_formats)
    write_configs(cfg.embed)
    conversions = convert_formats(cfg, formats)
    lines = [
        "conversions: "
        + ", ".join(
            f"{r.format} ({'cached' if r.cached else f'{r.seconds:.0f}s'})" for r in conversions
        )
    ]
    served, skipped = servable_formats(cfg, formats)
    work = resolve(cfg.paths.work_dir) / "embed-demo"
    server = make_server(cfg, served, "local", work_dir=work / "triton")
    with running(server):
        lines.append(f"tritonserver ready at {server.url} serving {', '.join(served)} + ensembles")
        with TritonClient(server.http_address, "http", timeout_s=120.0) as client:
            cmp = compare_served(cfg, client, served, skipped)
    for fmt, s in cmp.vs_oracle.items():
        bad = cmp.failures[fmt] + cmp.blowups[fmt]
        lines.append(
            f"{fmt}: max|Δ| {s.max_abs:.1e}, mean‖Δ‖ {s.mean_norm:.1e}, cos {s.mean_cosine:.4f}, "
            f"top-1 {s.top1_agreement:.0%} vs oracle -> {'ok' if not bad else 'FAIL'}"
        )
    report = write_report(cfg, cmp, conversions, path=work / "embeddings.md")
    lines.append(f"report: {report} ({time.monotonic() - t0:.0f}s)")
    return lines
