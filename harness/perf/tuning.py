"""`harness tune` end to end: serve the repository on Triton, sweep the variants
(harness.perf.tune), choose, optionally apply the choice, and write reports/triton.md."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig

from harness.errors import HarnessError
from harness.paths import resolve
from harness.perf.report import write_report
from harness.perf.tune import (
    Bench,
    alone_budget,
    apply_choice,
    ceiling_note,
    ceiling_of,
    choose,
    concurrency_sweep,
    confirm,
    finalists,
    grid,
    sweep,
    variant_of,
)
from harness.services.triton import make_triton
from harness.serving.client import TritonClient
from harness.serving.repository import read_config


def _grid_settings(cfg: DictConfig, quick: bool) -> dict:
    tune, test = cfg.triton.tune, cfg.triton.test
    src = test if quick else tune
    return {
        "delays": list(src.max_queue_delay_microseconds),
        "instances": list(src.instance_count),
        "interval": int(src.measurement_interval_ms),
        "levels": list(src.concurrency_sweep),
        "batching": list(tune.batching),
        "threads": list(tune.intra_op_thread_count),
        "confirm_rounds": int(src.confirm_rounds),
    }


def _model_notes(model_dir: Path) -> list[str]:
    import hashlib

    notes = []
    for path in sorted(model_dir.glob("[0-9]*/model.onnx")):
        digest = hashlib.sha256(path.resolve().read_bytes()).hexdigest()[:12]
        notes.append(
            f"model file {path.name} (version {path.parent.name}): "
            f"{path.stat().st_size} bytes, sha256 {digest}..."
        )
    return notes


def run_tune(
    cfg: DictConfig,
    *,
    backend: str | None = None,
    http_url: str | None = None,
    grpc_url: str | None = None,
    apply: bool = False,
    quick: bool = False,
) -> list[str]:
    """The whole `harness tune`: serve, sweep, choose, (apply), write the report; summary lines."""
    model = cfg.triton.model_name
    repo = resolve(cfg.triton.repository)
    model_dir = repo / model
    canonical = read_config(model_dir)
    backend = backend or cfg.triton.backend
    if backend != "external" and not any(model_dir.glob("[0-9]*/model.onnx")):
        raise HarnessError(f"{model_dir}/1/model.onnx is missing: run `harness export` first")
    tune = cfg.triton.tune
    g = _grid_settings(cfg, quick)
    preferred = list(cfg.triton.model_config.preferred_batch_size)
    before_variant = variant_of(canonical)
    variants = grid(g["batching"], g["delays"], g["instances"], g["threads"])
    if before_variant not in variants:
        variants.append(before_variant)
    budget = float(cfg.triton.latency_budget_ms.p99)
    alone_factor = tune.get("max_alone_p50_over_nobatch")
    protocol = str(tune.protocol)
    server = make_triton(cfg, backend, repo, [model], http_url=http_url, grpc_url=grpc_url)
    with server, TritonClient(server.grpc_url, "grpc") as client:
        bench = Bench(
            cfg, client, server.address(protocol), model, protocol, g["interval"], preferred
        )
        concurrency = int(tune.concurrency)
        trials = sweep(bench, variants, concurrency, alone=alone_factor is not None)
        alone_p50 = alone_budget(trials, alone_factor)
        leading = finalists(trials, budget, int(tune.confirm_top), before_variant, alone_p50)
        confirm(bench, leading, g["confirm_rounds"], concurrency)
        chosen, why = choose(trials, budget, before_variant, float(tune.min_gain), alone_p50)
        before = next(t for t in trials if t.variant == before_variant)
        nobatch = [t for t in trials if not t.variant.batching]
        baseline = min(
            nobatch, key=lambda t: (t.variant.instances, t.variant.threads), default=None
        )
        for t in {id(t): t for t in (baseline, chosen) if t is not None}.values():
            concurrency_sweep(bench, t, g["levels"])
        ceiling = ceiling_of(bench, chosen, concurrency)
    written = apply_choice(model_dir, chosen.variant, preferred) if apply else None
    report = write_report(
        resolve(tune.report),
        resolve(tune.plot),
        model=model,
        backend=server.backend,
        protocol=protocol,
        concurrency=int(tune.concurrency),
        budget_p99_ms=budget,
        alone_p50_ms=alone_p50,
        repository=repo,
        trials=trials,
        before=before,
        chosen=chosen,
        reasoning=why,
        baseline=baseline,
        applied=apply,
        notes=_model_notes(model_dir)
        + ([ceiling_note(ceiling, chosen)] if ceiling else [])
        + [
            f"perf_analyzer runs on the same {os.cpu_count()} vCPUs as the server: absolute"
            " numbers are low and noisy; compare ratios measured in one run.",
            f"measurement interval {g['interval']} ms per trial"
            + (" (reduced --quick grid)" if quick else ""),
            f"the {len(leading)} leading configs (the config in use among them) were measured"
            f" {g['confirm_rounds']} more time(s) in alternating rounds; each keeps its best run."
            f" Another config replaces the one in use only when more than"
            f" {float(tune.min_gain):.0%} faster",
        ]
        + [
            f"{t.variant.label}: perf_analyzer could not hold its stability band"
            for t in trials
            if not t.target.stable
        ]
        + (
            [
                f"tritonserver --http-thread-count={cfg.triton.server.http_thread_count}"
                " (`triton.server.http_thread_count`; docs/triton.md has the measurement"
                " against Triton's default)"
            ]
            if server.backend != "external"
            else []
        ),
    )
    lines = [
        f"tune: {len(trials)} configs at concurrency {tune.concurrency} ({protocol})",
        f"  before:  {before.variant.label}: {before.target.throughput:.0f} infer/s, "
        f"p99 {before.target.p99_ms:.2f} ms",
        f"  chosen:  {why}",
        f"  report:  {report}",
    ]
    if ceiling:
        lines.insert(3, f"  ceiling: {ceiling.throughput:.0f} infer/s with a zero-compute model")
    if written:
        lines.append(f"  applied: {written}")
    return lines
