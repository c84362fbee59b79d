"""`harness roofline` end to end: count, measure roofs, analyse, validate, write the report."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from omegaconf import DictConfig

from harness.errors import HarnessError
from harness.paths import resolve
from harness.roofline import counting, models, roofs, validate
from harness.roofline.analysis import analyse, analyse_batch, choose_batch
from harness.roofline.report import write_report
from harness.roofline.results import CrossCheck, ModelAnalysis, RooflineRun, Validation

log = logging.getLogger(__name__)


def _settings(cfg: DictConfig) -> tuple[list[str], list[int], str, list[str]]:
    """Validated (models, batch sizes, dtype, devices) from the config; bad values raise."""
    rc = cfg.roofline
    model = str(rc.model)
    names = list(models.MODELS) if model == "all" else [model]
    for n in names:
        if n not in models.MODELS:
            raise HarnessError(f"roofline.model={model!r}: expected cnn, minilm or all")
    try:
        batches = [int(b) for b in rc.batch_sizes]
    except (TypeError, ValueError) as exc:
        raise HarnessError(f"roofline.batch_sizes must be a list of integers: {exc}") from exc
    if not batches or min(batches) < 1 or len(set(batches)) != len(batches):
        raise HarnessError("roofline.batch_sizes must be distinct positive integers, e.g. [1,8,64]")
    dtype = str(rc.dtype)
    if dtype not in ("fp32", "fp16"):
        raise HarnessError(f"roofline.dtype={dtype!r}: expected fp32 or fp16")
    devices = [str(d) for d in rc.devices]
    if not devices:
        raise HarnessError("roofline.devices is empty")
    return names, sorted(batches), dtype, devices


def cross_check(
    spec: models.ModelSpec, profiles: list[counting.LayerProfile], batch: int
) -> list[CrossCheck]:
    """Counter FLOPs vs analytic formulas vs thop for every Conv2d/Linear/attention layer."""
    inputs = spec.make_inputs(batch)
    analytic = counting.analytic_layer_flops(spec.module, inputs, spec.attention_at(batch))
    thop = counting.thop_layer_flops(spec.module, inputs)
    counted = {p.name: p.at(batch) for p in profiles}
    return [
        CrossCheck(name, kind, counted[name].flops if name in counted else 0, flops, thop.get(name))
        for name, (kind, flops) in analytic.items()
    ]


def run_roofline(cfg: DictConfig, command: str = "harness roofline") -> tuple[RooflineRun, Path]:
    """Analyse the configured models and write reports/roofline.md (+ PNG, CSV, JSON)."""
    start = time.perf_counter()
    names, batches, dtype, device_keys = _settings(cfg)
    rc = cfg.roofline
    itemsize = counting.dtype_bytes(dtype)
    report_path = resolve(str(rc.output.report))
    if report_path.suffix != ".md":
        raise HarnessError(f"roofline.output.report must end in .md: {report_path}")
    threads_before = torch.get_num_threads()
    if int(rc.cpu.threads) > 0:
        torch.set_num_threads(int(rc.cpu.threads))
    try:
        run = _run(cfg, names, batches, dtype, device_keys, itemsize, command, start)
    finally:
        torch.set_num_threads(threads_before)  # other demo parts keep their own setting
    write_report(run, report_path, cfg)
    return run, report_path


def _run(
    cfg: DictConfig,
    names: list[str],
    batches: list[int],
    dtype: str,
    device_keys: list[str],
    itemsize: int,
    command: str,
    start: float,
) -> RooflineRun:
    """Count, time and measure roofs (interleaved), then analyse; the caller writes the report.

    The CPU roof rounds are spread over the run (one before anything, one after each model's
    timings, the rest at the end): on a shared machine the roofs and the timings then see the
    same background load, and the best-of roof is the best seen during the whole run.
    """
    rc = cfg.roofline
    gpu_devices = [roofs.gpu_device(k, cfg, dtype) for k in device_keys if k != "cpu"]
    use_cpu = "cpu" in device_keys
    rounds_left = int(rc.cpu.noise_repeats) if use_cpu else 0
    if use_cpu and rounds_left < 1:
        raise HarnessError("roofline.cpu.noise_repeats must be at least 1")
    cpu_m: roofs.CpuMeasurement | None = None

    def roof_round() -> None:
        nonlocal cpu_m, rounds_left
        if rounds_left > 0:
            log.info("roofline: measuring this CPU's roofs (sgemm, triad/copy sweep)")
            cpu_m = roofs.merge(cpu_m, roofs.measure_cpu(cfg, dtype, rounds=1))
            rounds_left -= 1

    roof_round()
    counted = []
    v = rc.validate
    for name in names:
        t0 = time.perf_counter()
        log.info("roofline: counting %s", name)
        spec = models.build(name, cfg)
        profiles = counting.profile_model(
            spec.module, spec.make_inputs, list(rc.free_ops), list(rc.gather_ops)
        )
        check_batch = int(rc.crosscheck_batch)
        checks = cross_check(spec, profiles, check_batch)
        bad = [c.layer for c in checks if not c.ok]
        if bad:
            log.warning("roofline: FLOP cross-check disagrees for %s", ", ".join(bad))
        timings: list[validate.Timing] = []
        note = None
        if not v.enabled:
            note = "validation disabled (roofline.validate.enabled=false)"
        elif not use_cpu:
            note = "validation needs the cpu device in roofline.devices"
        elif dtype != "fp32":
            note = "validation runs fp32 models on the CPU: run with roofline.dtype=fp32"
        else:
            log.info("roofline: timing %s with PyTorch/onnxruntime", name)
            timings, note = validate.measure(
                spec,
                [int(b) for b in v.batch_sizes.get(name, [])],
                int(v.warmup),
                int(v.repeats),
                bool(v.onnxruntime),
                int(v.opset),
                torch.get_num_threads(),
            )
            roof_round()
        counted.append(
            (spec, profiles, checks, check_batch, timings, note, time.perf_counter() - t0)
        )
    while rounds_left > 0:
        roof_round()
    devices: list[roofs.Device] = [roofs.cpu_device(cpu_m)] if cpu_m is not None else []
    devices += gpu_devices
    analyses = []
    for spec, profiles, checks, check_batch, timings, note, seconds in counted:
        results = analyse(profiles, itemsize, devices, batches)
        choices = {
            d.key: choose_batch(results[d.key], d, float(rc.saturation_fraction)) for d in devices
        }
        vals = []
        for t in timings:
            pred = analyse_batch([p.at(t.batch) for p in profiles], itemsize, devices[0], t.batch)
            vals.append(Validation(t, pred.time, pred.time_cache))
        analyses.append(
            ModelAnalysis(
                spec.name,
                spec.description,
                profiles,
                results,
                choices,
                checks,
                check_batch,
                vals,
                note,
                seconds,
            )
        )
    return RooflineRun(
        dtype,
        itemsize,
        batches,
        devices,
        cpu_m,
        analyses,
        time.perf_counter() - start,
        command,
    )
