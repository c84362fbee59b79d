"""The roofline model: per-layer bounds, attainable FLOP/s, predicted time and best batch size."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from harness.roofline.counting import LayerCount, LayerProfile
from harness.roofline.roofs import Device


def attainable(intensity: float, device: Device, bandwidth: float | None = None) -> float:
    """Attainable FLOP/s = min(peak, intensity x bandwidth)."""
    bw = device.bandwidth if bandwidth is None else bandwidth
    return min(device.peak_flops, intensity * bw)


def bound(intensity: float, device: Device) -> str:
    """`compute` at or right of the ridge point, `memory` left of it."""
    return "compute" if intensity >= device.ridge else "memory"


def layer_time(flops: int, nbytes: int, peak: float, bandwidth: float) -> float:
    """Roofline time of one layer: the slower of its compute and its memory traffic."""
    return max(flops / peak, nbytes / bandwidth)


@dataclasses.dataclass
class LayerResult:
    """One layer at one batch size on one device."""

    layer: LayerCount
    intensity: float
    bound: str
    attainable: float
    time: float  # no-cache model against the main-memory roof
    roof: str  # roof used by the cache-aware time (CPU: L2/L3/DRAM by working set)
    time_cache: float  # cache-aware time


@dataclasses.dataclass
class ModelResult:
    """The whole model at one batch size on one device."""

    batch: int
    device: str
    flops: int
    bytes: int
    intensity: float
    time: float
    time_cache: float
    layers: list[LayerResult]

    @property
    def attainable(self) -> float:
        """Whole-model attainable FLOP/s (total FLOPs / predicted time)."""
        return self.flops / self.time if self.time else 0.0

    @property
    def throughput(self) -> float:
        """Predicted samples per second."""
        return self.batch / self.time if self.time else 0.0

    @property
    def memory_bound(self) -> int:
        """How many layers are memory-bound."""
        return sum(1 for r in self.layers if r.bound == "memory")


def analyse_batch(
    layers: Iterable[LayerCount], itemsize: int, device: Device, batch: int
) -> ModelResult:
    """Roofline of every layer of one batch on one device, and the model's totals."""
    results = []
    for layer in layers:
        nbytes = layer.bytes(itemsize)
        ai = layer.intensity(itemsize)
        roof, bw = device.bandwidth_for(nbytes, cache_aware=True)
        results.append(
            LayerResult(
                layer,
                ai,
                bound(ai, device),
                attainable(ai, device),
                layer_time(layer.flops, nbytes, device.peak_flops, device.bandwidth),
                roof,
                layer_time(layer.flops, nbytes, device.peak_flops, bw),
            )
        )
    flops = sum(r.layer.flops for r in results)
    nbytes = sum(r.layer.bytes(itemsize) for r in results)
    return ModelResult(
        batch,
        device.key,
        flops,
        nbytes,
        flops / nbytes if nbytes else 0.0,
        sum(r.time for r in results),
        sum(r.time_cache for r in results),
        results,
    )


def analyse(
    profiles: Sequence[LayerProfile],
    itemsize: int,
    devices: Sequence[Device],
    batches: Sequence[int],
) -> dict[str, list[ModelResult]]:
    """Device key -> one ModelResult per batch size (in the given batch order)."""
    return {
        d.key: [analyse_batch([p.at(b) for p in profiles], itemsize, d, b) for b in batches]
        for d in devices
    }


@dataclasses.dataclass
class BatchChoice:
    """Best batch on a device: the fastest, and the smallest within `fraction` of it."""

    device: str
    best: int  # batch with the highest predicted throughput (samples/s)
    best_throughput: float
    chosen: int  # smallest batch reaching fraction x best throughput: where it saturates
    chosen_throughput: float
    fraction: float
    max_intensity_batch: int
    compute_bound_from: int | None  # smallest batch whose whole-model intensity passes the ridge


def choose_batch(results: Sequence[ModelResult], device: Device, fraction: float) -> BatchChoice:
    """Pick the batch: the throughput maximum and the saturation point (first within fraction)."""
    best = max(results, key=lambda r: (r.throughput, -r.batch))
    chosen = min(
        (r for r in results if r.throughput >= fraction * best.throughput), key=lambda r: r.batch
    )
    top_ai = max(results, key=lambda r: (r.intensity, -r.batch))
    ridge = [r.batch for r in results if r.intensity >= device.ridge]
    return BatchChoice(
        device.key,
        best.batch,
        best.throughput,
        chosen.batch,
        chosen.throughput,
        fraction,
        top_ai.batch,
        min(ridge) if ridge else None,
    )
