"""Sweep Triton batching/instance settings with perf_analyzer, like NVIDIA's Model Analyzer.

Each variant is loaded into the running server with a config override (explicit model-control
mode), measured at the target concurrency, and the best one (highest throughput whose p99 stays
within the latency budget) is chosen; the no-batching baseline and the choice also get a
concurrency sweep. The canonical config.pbtxt changes only through `apply_choice`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig

from harness.errors import HarnessError
from harness.perf.analyzer import PerfResult, run_perf_analyzer
from harness.serving.client import TritonClient
from harness.serving.repository import (
    apply_tuning,
    config_from_json,
    config_to_json,
    get_parameter,
    instance_count,
    leading_comments,
    read_config,
    write_config,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Variant:
    """One point of the sweep grid."""

    batching: bool
    delay_us: int | None
    instances: int
    threads: int

    @property
    def label(self) -> str:
        """Short human-readable name."""
        batch = f"dynamic {self.delay_us}us" if self.batching else "no batching"
        return f"{batch}, {self.instances} inst, {self.threads} thr"


@dataclass
class Trial:
    """A variant and what perf_analyzer measured for it."""

    variant: Variant
    target: PerfResult
    sweep: list[PerfResult] = field(default_factory=list)
    alone: PerfResult | None = None  # concurrency 1: a request with nothing to batch with

    def within(self, budget_p99_ms: float, alone_p50_ms: float | None = None) -> bool:
        """True when p99 at the target concurrency and a lone request's p50 are within budget."""
        if self.target.p99_ms > budget_p99_ms:
            return False
        return alone_p50_ms is None or self.alone is None or self.alone.p50_ms <= alone_p50_ms


def grid(
    batching: Sequence[bool],
    delays_us: Sequence[int],
    instances: Sequence[int],
    threads: Sequence[int],
) -> list[Variant]:
    """All variants: no batching once per instance/thread pair, batching per delay."""
    out: list[Variant] = []
    for inst in instances:
        for thr in threads:
            for b in batching:
                if not b:
                    out.append(Variant(False, None, int(inst), int(thr)))
                else:
                    out += [Variant(True, int(d), int(inst), int(thr)) for d in delays_us]
    return out


def variant_of(cfg_proto) -> Variant:
    """The Variant a ModelConfig corresponds to."""
    batching = cfg_proto.HasField("dynamic_batching")
    delay = cfg_proto.dynamic_batching.max_queue_delay_microseconds if batching else None
    threads = int(get_parameter(cfg_proto, "intra_op_thread_count", "0") or 0)
    return Variant(batching, delay, instance_count(cfg_proto), threads)


def load_variant(
    client: TritonClient,
    model: str,
    variant: Variant,
    base_json: dict,
    preferred: Sequence[int] | None = None,
) -> None:
    """Reload `model` on the server with `variant` applied to its served config."""
    tuned = apply_tuning(
        config_from_json(base_json),
        batching=variant.batching,
        max_queue_delay_us=variant.delay_us,
        preferred_batch_size=list(preferred) if preferred else None,
        instances=variant.instances,
        intra_op_threads=variant.threads or None,
    )
    client.load(model, config_to_json(tuned))
    if not client.model_ready(model):
        raise HarnessError(f"model '{model}' not ready after loading {variant.label}")


def choose(
    trials: Sequence[Trial],
    budget_p99_ms: float,
    keep: Variant | None = None,
    min_gain: float = 0.0,
    alone_p50_ms: float | None = None,
) -> tuple[Trial, str]:
    """The best trial (highest throughput within the latency budgets) and the reasoning.

    With `keep` (the config in use) within budget, another config must beat it by more than
    `min_gain` (a fraction) to be chosen: a difference inside the noise is no reason to change.
    `alone_p50_ms` bounds the p50 of a lone client (concurrency 1), where a long queue delay
    holds every request back waiting for a batch that never comes.
    """
    if not trials:
        raise HarnessError("no trial to choose from")
    ok = [t for t in trials if t.within(budget_p99_ms, alone_p50_ms)]
    if ok:
        best = max(ok, key=lambda t: t.target.throughput)
        alone = f" and a lone request's p50 within {alone_p50_ms:.2f} ms" if alone_p50_ms else ""
        why = (
            f"{best.variant.label}: highest throughput ({best.target.throughput:.0f} infer/s) of "
            f"the {len(ok)}/{len(trials)} configs whose p99 ({best.target.p99_ms:.2f} ms) stays "
            f"within the {budget_p99_ms:g} ms budget{alone}"
        )
        current = next((t for t in ok if t.variant == keep), None)
        if current is not None and current is not best:
            gain = best.target.throughput / current.target.throughput - 1
            if gain <= min_gain:
                cur, top = current.target, best.target
                why = (
                    f"{current.variant.label} (the config in use) kept: {cur.throughput:.0f}"
                    f" infer/s, p99 {cur.p99_ms:.2f} ms within the {budget_p99_ms:g} ms budget;"
                    f" the fastest, {best.variant.label} at {top.throughput:.0f} infer/s, is only"
                    f" {gain:.1%} ahead (a change needs > {min_gain:.0%})"
                )
                best = current
    else:
        best = min(trials, key=lambda t: t.target.p99_ms)
        why = (
            f"no config met the {budget_p99_ms:g} ms p99 budget; {best.variant.label} has the "
            f"lowest p99 ({best.target.p99_ms:.2f} ms)"
        )
    return best, why


def alone_budget(trials: Sequence[Trial], factor: float | None) -> float | None:
    """The lone-client p50 budget: `factor` x the fastest no-batching config's, same run."""
    unbatched = [t.alone.p50_ms for t in trials if not t.variant.batching and t.alone]
    if factor is None or not unbatched:
        return None
    return float(factor) * min(unbatched)


def finalists(
    trials: Sequence[Trial],
    budget_p99_ms: float,
    top: int,
    keep: Variant | None = None,
    alone_p50_ms: float | None = None,
) -> list[Trial]:
    """The `top` fastest trials within budget (else the fastest overall), plus the one in use."""
    ok = [t for t in trials if t.within(budget_p99_ms, alone_p50_ms)] or list(trials)
    out = sorted(ok, key=lambda t: -t.target.throughput)[: max(0, top)]
    current = next((t for t in trials if t.variant == keep), None)
    if current is not None and current not in out:
        out.append(current)
    return out


@dataclass
class Bench:
    """One served model under measurement: load a variant, run perf_analyzer, restore."""

    cfg: DictConfig
    client: TritonClient
    address: str
    model: str
    protocol: str
    measurement_interval_ms: int
    preferred: Sequence[int] | None = None
    base: dict = field(init=False)  # the served config at the start, restored by `restore`

    def __post_init__(self) -> None:
        self.base = self.client.config(self.model)

    def load(self, variant: Variant) -> None:
        """Serve `variant` of the starting config."""
        load_variant(self.client, self.model, variant, self.base, self.preferred)

    def run(self, concurrency: int | Sequence[int]) -> list[PerfResult]:
        """One perf_analyzer run over the given concurrency levels."""
        return run_perf_analyzer(
            self.cfg,
            self.model,
            self.address,
            concurrency=concurrency,
            protocol=self.protocol,
            measurement_interval_ms=self.measurement_interval_ms,
        )

    def restore(self) -> None:
        """Leave the server serving the config it had at the start."""
        self.client.load(self.model, config_to_json(config_from_json(self.base)))


def sweep(
    bench: Bench, variants: Sequence[Variant], concurrency: int, alone: bool = False
) -> list[Trial]:
    """Measure every variant at `concurrency` (and alone, at 1, when asked): one run each."""
    levels = [1, concurrency] if alone and concurrency != 1 else [concurrency]
    trials = []
    for i, variant in enumerate(variants, 1):
        bench.load(variant)
        by_level = {r.concurrency: r for r in bench.run(levels)}
        res = by_level[concurrency]
        trial = Trial(variant, res, alone=by_level.get(1) if alone else None)
        log.info(
            "[%d/%d] %s: %.0f infer/s, p99 %.2f ms%s",
            i,
            len(variants),
            variant.label,
            res.throughput,
            res.p99_ms,
            f"; alone p50 {trial.alone.p50_ms:.2f} ms" if trial.alone else "",
        )
        trials.append(trial)
    bench.restore()
    return trials


def confirm(bench: Bench, trials: Sequence[Trial], rounds: int, concurrency: int) -> None:
    """Re-measure `trials` in `rounds` alternating rounds; each keeps its best measurement."""
    if rounds <= 0 or not trials:
        return
    for r in range(1, rounds + 1):
        for t in trials:
            bench.load(t.variant)
            res = bench.run(concurrency)[0]
            log.info("[confirm %d/%d] %s: %.0f infer/s", r, rounds, t.variant.label, res.throughput)
            if res.throughput > t.target.throughput:
                t.target = res
    bench.restore()


def concurrency_sweep(bench: Bench, trial: Trial, levels: Sequence[int]) -> None:
    """Fill `trial.sweep` with one measurement per concurrency level."""
    bench.load(trial.variant)
    trial.sweep = bench.run(list(levels))
    bench.restore()


def ceiling_of(bench: Bench, trial: Trial, concurrency: int) -> PerfResult | None:
    """The trial's config served by a zero-compute model (python backend only; else None)."""
    from harness.perf.ceiling import load_null_model, serves_with_python

    if not serves_with_python(bench.base):
        return None
    bench.load(trial.variant)
    try:
        load_null_model(bench.client, bench.model, bench.client.config(bench.model))
        return bench.run(concurrency)[0]
    finally:
        bench.restore()


def ceiling_note(ceiling: PerfResult, chosen: Trial) -> str:
    """One report line: the serving path's ceiling and how close the chosen config comes."""
    share = chosen.target.throughput / ceiling.throughput
    return (
        f"serving-path ceiling: the chosen config served by a model that computes nothing"
        f" (harness.perf.ceiling) ran {ceiling.throughput:.0f} infer/s (p99"
        f" {ceiling.p99_ms:.2f} ms); the real model reaches {share:.0%} of it, so the model's"
        f" own compute is ~{max(0.0, 1 - share):.0%} of the per-request cost here"
    )


def apply_choice(model_dir: Path, variant: Variant, preferred: Sequence[int] | None) -> Path:
    """Write the chosen settings into the canonical config.pbtxt (validated, atomic)."""
    current = read_config(model_dir)
    tuned = apply_tuning(
        current,
        batching=variant.batching,
        max_queue_delay_us=variant.delay_us,
        preferred_batch_size=list(preferred) if preferred else None,
        instances=variant.instances,
        intra_op_threads=variant.threads or None,
    )
    if tuned == current:  # nothing to change: keep the hand-written file as it is
        return model_dir / "config.pbtxt"
    return write_config(tuned, model_dir, header=leading_comments(model_dir))
