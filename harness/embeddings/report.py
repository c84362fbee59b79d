"""reports/embeddings.md: conversions, drift vs the oracle, pairwise heatmap, perf table."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from harness.embeddings.compare import threshold_text
from harness.embeddings.convert import format_cfg
from harness.io import atomic_open, atomic_path
from harness.paths import resolve


def heatmap(names: list[str], matrix: np.ndarray, path: Path, title: str) -> Path:
    """A labelled heatmap PNG of a square matrix (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2, 1.0 * len(names) + 1.5))
    shown = np.log10(np.maximum(matrix, 1e-9))
    im = ax.imshow(shown, cmap="viridis")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{matrix[i, j]:.1e}", ha="center", va="center", color="w", fontsize=7)
    fig.colorbar(im, ax=ax, label="log10 mean ‖Δ‖")
    ax.set_title(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def write_report(
    cfg: DictConfig,
    comparison: Any = None,
    conversions: list[Any] | None = None,
    perf: dict[str, Any] | None = None,
    path: Path | None = None,
    ratios: list[str] | None = None,
) -> Path:
    """Write the Markdown report (heatmap PNG next to it); sections without data are left out."""
    path = Path(path) if path else resolve(cfg.embed.reports_dir) / "embeddings.md"
    # Sections are kept in a JSON sidecar so `compare` and `perf` runs each refresh their own
    # part of the one report without wiping the other's.
    state_path = path.with_suffix(".json")
    sections: dict[str, list[str]] = {}
    if state_path.is_file():
        try:
            sections = json.loads(state_path.read_text())
        except ValueError:
            sections = {}
    header = [
        "# Sentence embeddings: all-MiniLM-L6-v2 in every format",
        "",
        f"Updated {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC} on {_cpu()} "
        f"({os.cpu_count()} vCPU). Oracle: sentence-transformers "
        "`encode(normalize_embeddings=True)` in-process.",
        "",
    ]
    lines: list[str] = []
    if conversions:
        lines += ["## Conversions", ""]
        lines += ["| format | model | this run | conversion s | checks |", "|---|---|---|---|---|"]
        for r in conversions:
            if r.skipped:
                lines.append(f"| {r.format} | {r.model} | – | – | skipped: {r.skipped} |")
                continue
            checks = ", ".join(
                f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.checks.items()
            )
            how = f"cached, {r.seconds:.1f}s" if r.cached else f"converted, {r.seconds:.1f}s"
            lines.append(f"| {r.format} | {r.model} | {how} | {r.build_seconds:.1f} | {checks} |")
        lines.append("")
        sections["conversions"], lines = lines, []
    if comparison is not None:
        c = comparison
        lines += [
            f"## Drift against the oracle ({len(c.sentences)} fixture sentences, served)",
            "",
            "| format | max ‖Δ‖ | mean ‖Δ‖ | p95 ‖Δ‖ | max abs | mean cos | min cos | top-1 NN "
            "| threshold | verdict |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for fmt, s in c.vs_oracle.items():
            th = threshold_text(format_cfg(cfg, fmt).precision, cfg.embed.thresholds)
            bad = c.failures[fmt] + c.blowups[fmt]
            verdict = "pass" if not bad else "FAIL: " + "; ".join(bad)
            lines.append(
                f"| {fmt} | {s.max_norm:.2e} | {s.mean_norm:.2e} | {s.p95_norm:.2e} | "
                f"{s.max_abs:.2e} | {s.mean_cosine:.5f} | {s.min_cosine:.5f} | "
                f"{s.top1_agreement:.1%} | {th} | {verdict} |"
            )
        for fmt, why in c.skipped.items():
            lines.append(f"| {fmt} | – | – | – | – | – | – | – | – | not served: {why} |")
        names = list(c.embeddings)
        mat = np.array([[c.matrix[(x, y)].mean_norm for y in names] for x in names])
        png = path.with_name("embeddings_heatmap.png")
        heatmap(names, mat, png, "mean ‖Δ‖ between formats (served) and the oracle")
        lines += [
            "",
            "## Pairwise mean ‖Δ‖ (every pair of formats)",
            "",
            "| | " + " | ".join(names) + " |",
            "|---" * (len(names) + 1) + "|",
        ]
        for i, x in enumerate(names):
            lines.append(f"| {x} | " + " | ".join(f"{v:.1e}" for v in mat[i]) + " |")
        lines += ["", f"![heatmap]({png.name})", ""]
        sections["drift"], lines = lines, []
    if perf:
        sections["perf"] = perf_section(perf)
    if ratios:
        sections["ratios"] = ["## Throughput ratios (tests/perf, measured side by side)", ""]
        sections["ratios"] += [f"- {r}" for r in ratios] + [""]
    with atomic_open(state_path, encoding="utf-8") as fh:
        json.dump(sections, fh, indent=0)
    body = [
        ln for key in ("conversions", "drift", "perf", "ratios") for ln in sections.get(key, [])
    ]
    with atomic_open(path, encoding="utf-8") as fh:
        fh.write("\n".join(header + body) + "\n")
    return path


def perf_section(perf: dict[str, Any]) -> list[str]:
    """Markdown for perf results: perf_analyzer rows and in-process throughput."""
    lines = [
        "## Performance (perf_analyzer, token ids from the fixture sentences, batch 1 per request)",
        "",
        "| format | seq | concurrency | infer/s | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for row in perf.get("served", []):
        lines.append(
            f"| {row['format']} | {row['seq']} | {row['concurrency']} | "
            f"{row['throughput']:.1f} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} |"
        )
    if perf.get("inprocess"):
        lines += ["", "In-process throughput (same runtime, one process):", ""]
        lines += ["| format | batch | seq | seq/s |", "|---|---|---|---|"]
        for row in perf["inprocess"]:
            lines.append(
                f"| {row['format']} | {row['batch']} | {row['seq']} | {row['throughput']:.1f} |"
            )
    for note in perf.get("notes", []):
        lines += ["", note]
    lines.append("")
    return lines
