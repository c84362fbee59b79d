"""Run the real perf_analyzer against a Triton server and parse its CSV (and summary) output.

Times in perf_analyzer's CSV are microseconds; PerfResult keeps throughput in inferences/s and
latencies in milliseconds.
"""

from __future__ import annotations

import csv
import io
import re
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from omegaconf import DictConfig

from harness.errors import HarnessError
from harness.perf.tools import perf_analyzer_env, perf_analyzer_path, perf_analyzer_problem


@dataclass(frozen=True)
class PerfResult:
    """One concurrency level measured by perf_analyzer."""

    concurrency: int
    throughput: float  # inferences/s
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    avg_ms: float
    server_queue_ms: float
    server_compute_ms: float  # compute input + infer + output
    client_send_ms: float
    network_ms: float
    inference_count: int | None = None
    execution_count: int | None = None
    stable: bool = True  # False: perf_analyzer could not hold its stability band

    def as_dict(self) -> dict:
        """A plain dict (for tables/JSON)."""
        return asdict(self)


def _us(row: dict[str, str], key: str) -> float:
    value = row.get(key)
    return float(value) / 1000.0 if value not in (None, "") else 0.0


def parse_csv(text: str) -> list[PerfResult]:
    """Parse perf_analyzer's `-f` CSV: one PerfResult per concurrency row."""
    rows = list(csv.DictReader(io.StringIO(text.strip())))
    if not rows or "Inferences/Second" not in rows[0]:
        raise HarnessError("perf_analyzer CSV has no 'Inferences/Second' column")
    out = []
    for row in rows:
        out.append(
            PerfResult(
                concurrency=int(float(row["Concurrency"])),
                throughput=float(row["Inferences/Second"]),
                p50_ms=_us(row, "p50 latency"),
                p90_ms=_us(row, "p90 latency"),
                p95_ms=_us(row, "p95 latency"),
                p99_ms=_us(row, "p99 latency"),
                avg_ms=_us(row, "Avg latency"),
                server_queue_ms=_us(row, "Server Queue"),
                server_compute_ms=sum(
                    _us(row, k)
                    for k in (
                        "Server Compute Input",
                        "Server Compute Infer",
                        "Server Compute Output",
                    )
                ),
                client_send_ms=_us(row, "Client Send"),
                network_ms=_us(row, "Network+Server Send/Recv"),
            )
        )
    return out


_COUNTS = re.compile(
    r"Request concurrency:\s*(\d+).*?Inference count:\s*(\d+).*?Execution count:\s*(\d+)",
    re.S,
)


def parse_server_counts(stdout: str) -> dict[int, tuple[int, int]]:
    """{concurrency: (inference_count, execution_count)} from perf_analyzer's summary text."""
    return {int(c): (int(i), int(e)) for c, i, e in _COUNTS.findall(stdout)}


def run_perf_analyzer(
    cfg: DictConfig,
    model: str,
    address: str,
    *,
    concurrency: int | Sequence[int] = 8,
    protocol: str | None = None,
    batch_size: int | None = None,
    measurement_interval_ms: int | None = None,
    stability_percentage: int | None = None,
    max_trials: int | None = None,
    shared_memory: str | None = None,
    extra_args: Sequence[str] = (),
    timeout_s: float | None = None,
) -> list[PerfResult]:
    """Run perf_analyzer over the given concurrency levels; one PerfResult per level."""
    problem = perf_analyzer_problem(cfg)
    if problem:
        raise HarnessError(problem)
    run = cfg.perf.runner
    levels = [concurrency] if isinstance(concurrency, int) else list(concurrency)
    with tempfile.TemporaryDirectory(prefix="perf_analyzer.") as tmp:
        csv_path = Path(tmp) / "result.csv"
        argv = [
            str(perf_analyzer_path(cfg)),
            "-m",
            model,
            "-u",
            address,
            "-i",
            protocol or run.protocol,
            "-b",
            str(batch_size or run.batch_size),
            "--measurement-mode",
            str(run.measurement_mode),
            "--measurement-interval",
            str(measurement_interval_ms or run.measurement_interval_ms),
            "-s",
            str(stability_percentage or run.stability_percentage),
            "--max-trials",
            str(max_trials or run.max_trials),
            "--input-data",
            str(run.input_data),
            "-f",
            str(csv_path),
        ]
        if shared_memory:
            argv += ["--shared-memory", shared_memory]
        argv += list(extra_args)
        results: list[PerfResult] = []
        counts: dict[int, tuple[int, int]] = {}
        # One perf_analyzer run per level: a failed stabilization at one level keeps the others.
        for level in levels:
            cmd = argv + ["--concurrency-range", f"{level}:{level}"]
            res = _run(cfg, cmd, level, timeout_s or float(run.timeout_s))
            stable = True
            if res.returncode != 0 and "stable measurement" in res.stdout + res.stderr:
                # A busy shared machine may never hold the stability band: measure again with
                # the band opened wide and flag the result as unstable instead of failing.
                stable = False
                cmd = cmd + ["-s", str(int(run.unstable_retry_percentage))]
                res = _run(cfg, cmd, level, timeout_s or float(run.timeout_s))
            if res.returncode != 0 or not csv_path.exists():
                lines = (res.stderr + res.stdout).strip().splitlines()
                words = ("rror", "ailed", "nable")
                why = next((ln for ln in lines if any(w in ln for w in words)), "")
                why = why or (lines[-1] if lines else "")
                raise HarnessError(f"perf_analyzer failed (exit {res.returncode}): {why.strip()}")
            parsed = parse_csv(csv_path.read_text())
            results += [PerfResult(**{**r.as_dict(), "stable": stable}) for r in parsed]
            counts.update(parse_server_counts(res.stdout))
            csv_path.unlink()
    return [PerfResult(**{**r.as_dict(), **_counts(counts.get(r.concurrency))}) for r in results]


def _run(
    cfg: DictConfig, cmd: list[str], level: int, timeout: float
) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            cmd, env=perf_analyzer_env(cfg), capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        raise HarnessError(f"perf_analyzer timed out at concurrency {level}") from exc


def _counts(pair: tuple[int, int] | None) -> dict:
    if pair is None:
        return {}
    return {"inference_count": pair[0], "execution_count": pair[1]}
