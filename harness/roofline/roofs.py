"""Device roofs: this CPU measured with short microbenchmarks, GPUs from the spec-sheet table."""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import DictConfig

from harness.errors import HarnessError

_TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclasses.dataclass
class MemoryRoof:
    """A bandwidth roof that holds for working sets up to `capacity` bytes (None = any size)."""

    name: str
    bandwidth: float  # bytes/s
    capacity: int | None = None


@dataclasses.dataclass
class Device:
    """A device's compute peak for the analysed dtype and its memory roofs."""

    key: str
    label: str
    peak_flops: float  # FLOP/s
    bandwidth: float  # main-memory bytes/s (DRAM or HBM): the roof of the no-cache model
    source: str
    cache_roofs: list[MemoryRoof] = dataclasses.field(default_factory=list)

    @property
    def ridge(self) -> float:
        """Ridge point in FLOP/byte: below it a layer is memory-bound."""
        return self.peak_flops / self.bandwidth

    def bandwidth_for(self, working_set: int, cache_aware: bool) -> tuple[str, float]:
        """(roof name, bytes/s) governing a layer of this working set."""
        if cache_aware:
            for roof in sorted(self.cache_roofs, key=lambda r: r.capacity or 0):
                if roof.capacity is not None and working_set <= roof.capacity:
                    return roof.name, roof.bandwidth
        return "DRAM" if self.key == "cpu" else "HBM", self.bandwidth


def gpu_device(key: str, cfg: DictConfig, dtype: str) -> Device:
    """A GPU from the `roofline.gpus` spec table, at the peak its dtype runs at."""
    table = cfg.roofline.gpus
    if key not in table:
        raise HarnessError(
            f"unknown device {key!r}: expected cpu or one of {', '.join(table.keys())}"
        )
    g = table[key]
    precision = str(cfg.roofline.gpu_peak_for.get(dtype, dtype))
    if precision not in g.peak_flops:
        raise HarnessError(f"device {key} has no {precision} peak in roofline.gpus")
    return Device(
        key,
        str(g.label),
        float(g.peak_flops[precision]),
        float(g.bandwidth),
        f"spec sheet, {precision} dense",
    )


def _best_time(fn: Callable[[], object], min_time: float, min_runs: int = 3) -> float:
    """Fastest of repeated calls, repeating until `min_time` has been spent (after a warm-up)."""
    fn()
    best, runs, start = float("inf"), 0, time.perf_counter()
    while runs < min_runs or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        runs += 1
    return best


def gemm_flops(n: int, min_time: float, dtype: str = "fp32") -> float:
    """Peak matmul FLOP/s: best n x n x n torch.mm (sgemm for fp32) over `min_time` seconds."""
    a = torch.rand(n, n, dtype=_TORCH_DTYPES[dtype])
    b = torch.rand(n, n, dtype=_TORCH_DTYPES[dtype])
    c = torch.empty(n, n, dtype=_TORCH_DTYPES[dtype])
    best = _best_time(lambda: torch.mm(a, b, out=c), min_time)
    return 2.0 * n**3 / best


def stream_bandwidth(array_kib: int, min_time: float) -> dict[str, float]:
    """Triad (c = a + 2b, 3 arrays) and copy (2 arrays) bytes/s with fp32 arrays of this size."""
    n = array_kib * 1024 // 4
    a, b, c = torch.rand(n), torch.rand(n), torch.empty(n)
    triad = 3 * n * 4 / _best_time(lambda: torch.add(a, b, alpha=2.0, out=c), min_time)
    copy = 2 * n * 4 / _best_time(lambda: c.copy_(a), min_time)
    return {"triad": triad, "copy": copy}


def cache_sizes(fallback: dict[str, int]) -> dict[str, int]:
    """Total bytes of each data/unified cache level over all its instances, from /sys."""
    out: dict[str, int] = {}
    seen: set[tuple[str, str]] = set()
    for idx in sorted(Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cache/index[0-9]*")):
        try:
            kind = (idx / "type").read_text().strip()
            level = (idx / "level").read_text().strip()
            size = (idx / "size").read_text().strip()
            shared = (idx / "shared_cpu_list").read_text().strip()
        except OSError:
            continue
        if kind == "Instruction" or (level, shared) in seen:
            continue
        seen.add((level, shared))
        mult = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(size[-1], 1)
        value = int(size.rstrip("KMG")) * mult
        out[f"L{level}"] = out.get(f"L{level}", 0) + value
    for name, value in fallback.items():
        out.setdefault(name, int(value))
    return out


@dataclasses.dataclass
class CpuMeasurement:
    """What the CPU microbenchmarks saw: per-round numbers and the roofs derived from them."""

    threads: int
    gemm_n: int
    dtype: str
    gemm: list[float]  # FLOP/s per round
    sweep: dict[int, list[dict[str, float]]]  # array KiB -> per round {triad, copy}
    caches: dict[str, int]
    seconds: float

    def peak(self) -> float:
        """Best matmul FLOP/s over the rounds."""
        return max(self.gemm)

    def best_bw(self, kib: int) -> float:
        """Best of triad/copy over the rounds at one array size."""
        return max(max(r.values()) for r in self.sweep[kib])

    def working_set(self, kib: int) -> int:
        """Triad working set (3 arrays) in bytes at one array size."""
        return 3 * kib * 1024

    def roofs(self) -> tuple[float, list[MemoryRoof]]:
        """(DRAM bytes/s, cache roofs): best bandwidth over sizes whose working set fits a level.

        DRAM is the largest array size (its working set must exceed the last-level cache).
        """
        sizes = sorted(self.sweep)
        dram = self.best_bw(sizes[-1])
        llc = max(self.caches.values(), default=0)
        if self.working_set(sizes[-1]) <= llc:
            raise HarnessError(
                f"roofline.cpu.bandwidth_array_kib: the largest array ({sizes[-1]} KiB, working "
                f"set {self.working_set(sizes[-1]) / 2**20:.0f} MiB) does not exceed the "
                f"last-level cache ({llc / 2**20:.0f} MiB), so no DRAM bandwidth can be measured;"
                f" add a size above {llc // 3 // 1024} KiB"
            )
        roofs, lower = [], 0
        for level in sorted(self.caches, key=lambda k: self.caches[k]):
            if level == "L1":
                continue
            cap = self.caches[level]
            inside = [k for k in sizes if lower < self.working_set(k) <= cap]
            if inside:
                roofs.append(MemoryRoof(level, max(self.best_bw(k) for k in inside), cap))
            lower = cap
        return dram, roofs

    def spread(self) -> dict[str, float]:
        """Run-to-run spread (max/min - 1) of the gemm and the DRAM numbers over the rounds."""
        big = max(self.sweep)
        dram = [max(r.values()) for r in self.sweep[big]]
        return {
            "gemm": max(self.gemm) / min(self.gemm) - 1.0,
            "dram": max(dram) / min(dram) - 1.0,
        }

    def gemm_median(self) -> float:
        """Median gemm FLOP/s over the rounds."""
        return statistics.median(self.gemm)


def measure_cpu(cfg: DictConfig, dtype: str, rounds: int | None = None) -> CpuMeasurement:
    """Run the sgemm and bandwidth microbenchmarks `rounds` times (default noise_repeats)."""
    c = cfg.roofline.cpu
    dtype = str(c.gemm_dtype_for.get(dtype, dtype))
    if dtype not in _TORCH_DTYPES:
        raise HarnessError(f"unknown dtype {dtype!r} for the CPU gemm benchmark")
    if int(c.threads) > 0:
        torch.set_num_threads(int(c.threads))
    start = time.perf_counter()
    gemm: list[float] = []
    sweep: dict[int, list[dict[str, float]]] = {int(k): [] for k in c.bandwidth_array_kib}
    for _ in range(int(c.noise_repeats) if rounds is None else rounds):
        gemm.append(gemm_flops(int(c.gemm_n), float(c.gemm_min_time_s), dtype))
        for kib in sweep:
            sweep[kib].append(stream_bandwidth(kib, float(c.bandwidth_min_time_s)))
    caches = cache_sizes({k: int(v) for k, v in c.cache_fallback_bytes.items()})
    return CpuMeasurement(
        torch.get_num_threads(),
        int(c.gemm_n),
        dtype,
        gemm,
        sweep,
        caches,
        time.perf_counter() - start,
    )


def merge(a: CpuMeasurement | None, b: CpuMeasurement) -> CpuMeasurement:
    """Both measurements' rounds together (rounds taken at different moments of one run)."""
    if a is None:
        return b
    sweep = {k: a.sweep.get(k, []) + b.sweep.get(k, []) for k in {*a.sweep, *b.sweep}}
    return dataclasses.replace(a, gemm=a.gemm + b.gemm, sweep=sweep, seconds=a.seconds + b.seconds)


def cpu_device(m: CpuMeasurement) -> Device:
    """This CPU as a Device: measured matmul peak, DRAM roof and cache roofs."""
    dram, roofs = m.roofs()
    return Device(
        "cpu",
        f"this CPU ({m.threads} threads)",
        m.peak(),
        dram,
        f"measured: {m.dtype} {m.gemm_n}^3 torch.mm; triad/copy sweep",
        roofs,
    )
