"""reports/triton.md, written by `harness tune`: system, task, repository, sweep table, choice."""

from __future__ import annotations

import datetime as dt
import os
import platform
from collections.abc import Sequence
from pathlib import Path

from harness.io import atomic_open, atomic_path
from harness.perf.analyzer import PerfResult
from harness.perf.tune import Trial


def system_info() -> dict[str, str]:
    """OS, CPU model, vCPU count and RAM of this machine."""
    info = {"os": platform.platform(), "python": platform.python_version()}
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                info["os"] = f"{line.split('=', 1)[1].strip(chr(34))} ({platform.release()})"
    except OSError:
        pass
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info["cpu"] = cpu
    info["vcpu"] = str(os.cpu_count())
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        info["ram"] = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        info["ram"] = "unknown"
    return info


def tree(root: Path) -> str:
    """A `tree`-style listing of a directory (hidden files shown, e.g. .gitkeep)."""
    root = Path(root)
    lines = [root.name + "/"]

    def walk(d: Path, prefix: str) -> None:
        items = sorted(d.iterdir(), key=lambda p: (p.is_file(), p.name))
        for i, p in enumerate(items):
            last = i == len(items) - 1
            lines.append(f"{prefix}{'└── ' if last else '├── '}{p.name}{'/' if p.is_dir() else ''}")
            if p.is_dir():
                walk(p, prefix + ("    " if last else "│   "))

    if root.is_dir():
        walk(root, "")
    return "\n".join(lines)


def _row(label: str, r: PerfResult) -> str:
    flag = "" if r.stable else " (unstable)"
    return (
        f"| {label} | {r.concurrency} | {r.throughput:.0f}{flag} | {r.p50_ms:.2f} | "
        f"{r.p90_ms:.2f} | {r.p95_ms:.2f} | {r.p99_ms:.2f} | {r.server_queue_ms:.3f} | "
        f"{r.server_compute_ms:.3f} |"
    )


HEADER = (
    "| config | concurrency | infer/s | p50 ms | p90 ms | p95 ms | p99 ms | queue ms "
    "| compute ms |\n"
    "|---|---|---|---|---|---|---|---|---|"
)


def plot(path: Path, trials: Sequence[Trial], chosen: Trial, baseline: Trial | None) -> Path:
    """Throughput vs p99: every config at the target concurrency, plus concurrency curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for t in trials:
        marker = "o" if t.variant.batching else "x"
        ax.scatter(t.target.p99_ms, t.target.throughput, marker=marker, color="grey", alpha=0.7)
    for t, color, name in ((baseline, "tab:red", "no batching"), (chosen, "tab:green", "chosen")):
        if t is not None and t.sweep:
            xs = [r.p99_ms for r in t.sweep]
            ys = [r.throughput for r in t.sweep]
            ax.plot(xs, ys, "-o", color=color, label=f"{name}: {t.variant.label}")
            for r in t.sweep:
                ax.annotate(f"c{r.concurrency}", (r.p99_ms, r.throughput), fontsize=7)
    ax.scatter(
        chosen.target.p99_ms,
        chosen.target.throughput,
        s=120,
        facecolors="none",
        edgecolors="tab:green",
    )
    ax.set_xlabel("p99 latency (ms)")
    ax.set_ylabel("throughput (infer/s)")
    ax.set_title("Triton: throughput vs p99 latency (grey: sweep at target concurrency)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def write_report(
    path: Path,
    plot_path: Path,
    *,
    model: str,
    backend: str,
    protocol: str,
    concurrency: int,
    budget_p99_ms: float,
    repository: Path,
    trials: Sequence[Trial],
    alone_p50_ms: float | None = None,
    before: Trial | None,
    chosen: Trial,
    reasoning: str,
    baseline: Trial | None,
    applied: bool,
    notes: Sequence[str] = (),
) -> Path:
    """Write reports/triton.md and its plot."""
    path, plot_path = Path(path), Path(plot_path)
    plot(plot_path, trials, chosen, baseline)
    sysinfo = system_info()
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "# Triton tuning report",
        "",
        f"Generated {now} by `harness tune`.",
        "",
        "## System",
        "",
        f"- OS: {sysinfo['os']}",
        f"- CPU: {sysinfo['cpu']}",
        f"- vCPU: {sysinfo['vcpu']}",
        f"- RAM: {sysinfo['ram']}",
        f"- Python: {sysinfo['python']}",
        f"- Triton backend: `{backend}`"
        + (
            " (the real tritonserver 2.51 binary; ONNX models run by python-backend stand-ins"
            " that execute the same model.onnx with onnxruntime)"
            if backend == "local"
            else ""
        ),
        "",
        "## Task",
        "",
        f"Serve `{model}` (digit classifier, input `images` FP32 [N,1,28,28], output `logits`"
        f" FP32 [N,10]) and find the dynamic-batching / instance settings with the highest"
        f" throughput at concurrency {concurrency} ({protocol}, perf_analyzer, batch 1 per request)"
        f" whose p99 latency stays within the budget of {budget_p99_ms:g} ms"
        " (`configs/triton/default.yaml: latency_budget_ms.p99`)"
        + (
            f" and whose p50 for a lone client (concurrency 1, nothing to batch with) stays"
            f" within {alone_p50_ms:.2f} ms (`triton.tune.max_alone_p50_over_nobatch` times the"
            " no-batching config's, measured in the same sweep)."
            if alone_p50_ms is not None
            else "."
        ),
        "",
        "## Model repository",
        "",
        "```",
        tree(repository),
        "```",
        "",
        "## Before / after",
        "",
        HEADER,
    ]
    if before is not None:
        out.append(_row(f"before: {before.variant.label}", before.target))
    if baseline is not None:
        out.append(_row(f"baseline: {baseline.variant.label}", baseline.target))
    out.append(_row(f"after: {chosen.variant.label}", chosen.target))
    if baseline is not None and baseline.target.throughput > 0:
        ratio = chosen.target.throughput / baseline.target.throughput
        out += ["", f"Chosen vs no batching: **{ratio:.2f}x** throughput."]
    out += [
        "",
        "## Choice",
        "",
        reasoning + ".",
        "",
        (
            "Written to the canonical `config.pbtxt` (`--apply`)."
            if applied
            else "Not written to the canonical `config.pbtxt` (run with `--apply` to do so)."
        ),
        "",
        f"## Sweep (concurrency {concurrency})",
        "",
    ]
    ranked = sorted(trials, key=lambda t: -t.target.throughput)
    if any(t.alone is not None for t in ranked):
        # The last column: p50 of the same config with one client (concurrency 1).
        out += [HEADER.replace("| compute ms |", "| compute ms | alone p50 ms |", 1) + "---|"]
        out += [
            _row(t.variant.label, t.target)
            + (f" {t.alone.p50_ms:.2f} |" if t.alone is not None else " - |")
            for t in ranked
        ]
    else:
        out += [HEADER] + [_row(t.variant.label, t.target) for t in ranked]
    for name, t in (("no batching", baseline), ("chosen", chosen)):
        if t is not None and t.sweep:
            out += ["", f"## Concurrency sweep: {name} ({t.variant.label})", "", HEADER]
            out += [_row(t.variant.label, r) for r in t.sweep]
    out += ["", f"![throughput vs latency]({os.path.relpath(plot_path, path.parent)})", ""]
    if notes:
        out += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    with atomic_open(path) as fh:
        fh.write("\n".join(out))
    for p in (path, plot_path):  # temp files are created 0600; reports are for everyone
        os.chmod(p, 0o644)
    return path
