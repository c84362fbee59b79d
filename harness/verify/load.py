"""Load for the latency/throughput check of `harness verify inference`: Locust or perf_analyzer.

`run_locust` drives any Open Inference Protocol server over HTTP/JSON with the real Locust CLI
(headless, optionally its own master/worker processes); `run_perf_analyzer_load` drives a Triton
server with perf_analyzer. Both return a LoadResult (throughput in inferences/s, times in ms).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote

from omegaconf import DictConfig

from harness.errors import HarnessError
from harness.perf.analyzer import run_perf_analyzer
from harness.perf.tools import perf_analyzer_problem
from harness.urls import base_url

# Run by path, never imported here: importing locust monkey-patches this process with gevent.
LOCUSTFILE = Path(__file__).resolve().with_name("locustfile.py")
AGGREGATED = "Aggregated"
# Locust's start-up (and master/worker hand-shake) and shutdown on a busy 2-core machine take a
# few seconds; past duration + ramp + this margin + one request time-out the run is hung.
_MARGIN_S = 30.0


@dataclass
class LoadResult:
    """One load run at a fixed concurrency, whichever tool generated it."""

    engine: str  # "locust" | "perf_analyzer"
    concurrency: int
    requests: int
    failures: int
    throughput: float  # inferences/s (successful requests/s x batch)
    p50_ms: float
    p90_ms: float
    p99_ms: float
    avg_ms: float
    duration_s: float  # the span the numbers cover
    detail: str = ""

    def as_dict(self) -> dict:
        """A plain dict (for reports/JSON)."""
        return asdict(self)


def _number(row: dict[str, str], key: str) -> float:
    if key not in row:
        raise HarnessError(f"Locust stats CSV has no '{key}' column")
    value = (row[key] or "").strip()
    # Locust writes N/A for percentiles of an entry without requests.
    return float(value) if value not in ("", "N/A") else 0.0


def _uncommented(text: str) -> io.StringIO:
    # Lines starting with '#' are notes (test fixtures say how they were captured); Locust
    # writes none.
    return io.StringIO("".join(ln for ln in text.splitlines(True) if not ln.startswith("#")))


def parse_locust_stats(
    text: str, *, concurrency: int, batch: int = 1, duration_s: float = 0.0
) -> LoadResult:
    """LoadResult from the "Aggregated" row of Locust's `PREFIX_stats.csv`."""
    rows = [r for r in csv.DictReader(_uncommented(text)) if r.get("Name") == AGGREGATED]
    if not rows:
        raise HarnessError("Locust stats CSV has no 'Aggregated' row")
    row = rows[0]
    requests = int(_number(row, "Request Count"))
    failures = int(_number(row, "Failure Count"))
    rps = _number(row, "Requests/s")
    fps = _number(row, "Failures/s")
    # Locust's Requests/s is Request Count over first-to-last request, so the covered span is
    # their ratio; without requests fall back to the asked-for duration.
    span = requests / rps if rps > 0 else duration_s
    return LoadResult(
        engine="locust",
        concurrency=concurrency,
        requests=requests,
        failures=failures,
        # A failed request is no inference: only successful requests count towards throughput.
        throughput=max(rps - fps, 0.0) * batch,
        p50_ms=_number(row, "50%"),
        p90_ms=_number(row, "90%"),
        p99_ms=_number(row, "99%"),
        avg_ms=_number(row, "Average Response Time"),
        duration_s=span,
    )


def parse_locust_failures(text: str, limit: int = 3) -> str:
    """The most frequent errors of Locust's `PREFIX_failures.csv`, as one line."""
    rows = list(csv.DictReader(_uncommented(text)))
    rows.sort(key=lambda r: -int(r.get("Occurrences") or 0))
    parts = [f"{r.get('Occurrences')}x {' '.join((r.get('Error') or '').split())}" for r in rows]
    return "; ".join(parts[:limit])


def _body_bytes(body: bytes | dict) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    kept = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(kept[-lines:])


def _kill_group(proc: subprocess.Popen) -> None:
    # Locust's --processes forks workers into the same process group (its own session).
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def run_locust(
    url: str,
    model: str,
    body: bytes | dict,
    *,
    concurrency: int,
    duration_s: float,
    processes: int = 1,
    batch: int = 1,
    timeout_s: float = 30,
    work_dir: Path | None = None,
    spawn_rate: float | None = None,
) -> LoadResult:
    """Run the Locust CLI headless against `url`/v2/models/`model`/infer; one user per request
    in flight."""
    if concurrency < 1 or duration_s <= 0 or processes < 1:
        raise HarnessError("Locust load needs concurrency >= 1, duration_s > 0 and processes >= 1")
    url = base_url(url)  # `host:port` as users type it; Locust's --host needs the scheme
    rate = float(spawn_rate) if spawn_rate else float(concurrency)
    keep = work_dir is not None
    run_dir = Path(work_dir) if keep else Path(tempfile.mkdtemp(prefix="harness-locust."))
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        body_file = run_dir / "body.json"
        body_file.write_bytes(_body_bytes(body))
        prefix = run_dir / "locust"
        final = run_dir / "locust_final"
        for stale in (f"{final}_stats.csv", f"{final}_failures.csv", f"{prefix}_stats.csv"):
            Path(stale).unlink(missing_ok=True)
        argv = [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(LOCUSTFILE),
            "--headless",
            "-u",
            str(concurrency),
            "-r",
            f"{rate:g}",
            "-t",
            f"{max(1, round(duration_s))}s",
            "--csv",
            str(prefix),
            "--host",
            url.rstrip("/"),
            "--only-summary",
            # Measure the steady state: statistics restart once every user is running.
            "--reset-stats",
            # Failed requests are counted in the result; a non-zero exit means Locust failed.
            "--exit-code-on-error",
            "0",
        ]
        if processes > 1:
            argv += ["--processes", str(processes)]
        env = dict(os.environ)
        env.update(
            {
                # The names the locustfile reads (harness/verify/locustfile.py).
                "HARNESS_LOAD_BODY_FILE": str(body_file),
                "HARNESS_LOAD_PATH": f"/v2/models/{quote(model, safe='')}/infer",
                "HARNESS_LOAD_TIMEOUT_S": str(float(timeout_s)),
                "HARNESS_LOAD_FINAL_PREFIX": str(final),
            }
        )
        limit = duration_s + concurrency / rate + float(timeout_s) + _MARGIN_S
        log_path = run_dir / "locust.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=run_dir,
                start_new_session=True,
            )
            try:
                code = proc.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                raise HarnessError(
                    f"Locust did not finish within {limit:.0f} s: {_tail(log_path)}"
                ) from None
            except BaseException:  # Ctrl-C or any error here: no Locust process outlives us
                _kill_group(proc)
                raise
            # Workers left behind by a master that died must not outlive the run.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        stats = Path(f"{final}_stats.csv")
        source = "final statistics"
        if not stats.exists():  # the quit hook did not run: Locust's last 1-s snapshot
            stats, source = Path(f"{prefix}_stats.csv"), "last CSV snapshot"
        if code != 0 or not stats.exists():
            raise HarnessError(f"Locust failed (exit {code}): {_tail(log_path)}")
        result = parse_locust_stats(
            stats.read_text(), concurrency=concurrency, batch=batch, duration_s=duration_s
        )
        failures_csv = Path(f"{final}_failures.csv")
        if not failures_csv.exists():
            failures_csv = Path(f"{prefix}_failures.csv")
        errors = parse_locust_failures(failures_csv.read_text()) if failures_csv.exists() else ""
        mode = f"{processes} worker processes" if processes > 1 else "1 process"
        result.detail = f"Locust {mode}, {concurrency} users, {source}" + (
            f"; errors: {errors}" if errors else ""
        )
        return result
    finally:
        if not keep:
            shutil.rmtree(run_dir, ignore_errors=True)


def run_perf_analyzer_load(
    cfg: DictConfig,
    address: str,
    model: str,
    *,
    concurrency: int,
    duration_s: float,
    batch: int = 1,
    protocol: str = "http",
    timeout_s: float | None = None,
) -> LoadResult:
    """Run perf_analyzer against a Triton server at one concurrency; same shape as Locust's."""
    problem = perf_analyzer_problem(cfg)
    if problem:
        hint = "" if "harness tools install" in problem else " (see `harness tools install`)"
        raise HarnessError(problem + hint)
    address = address.split("://", 1)[-1].rstrip("/")
    # perf_analyzer reports the average of its last 3 stable windows: 3 windows span the duration.
    window_ms = max(200, int(duration_s * 1000 / 3))
    start = time.monotonic()
    (res,) = run_perf_analyzer(
        cfg,
        model,
        address,
        concurrency=concurrency,
        protocol=protocol,
        batch_size=batch,
        measurement_interval_ms=window_ms,
        timeout_s=timeout_s,
    )
    wall = time.monotonic() - start
    span = 3 * window_ms / 1000.0
    # Server-side inference count over the measured windows; estimated where the server has none.
    if res.inference_count is not None:
        requests = res.inference_count // max(batch, 1)
    else:
        requests = round(res.throughput / max(batch, 1) * span)
    return LoadResult(
        engine="perf_analyzer",
        concurrency=concurrency,
        requests=requests,
        failures=0,  # perf_analyzer stops with an error on a failed request
        throughput=res.throughput,
        p50_ms=res.p50_ms,
        p90_ms=res.p90_ms,
        p99_ms=res.p99_ms,
        # perf_analyzer's CSV has no average column, only its parts: their sum is the average.
        avg_ms=res.avg_ms
        or res.client_send_ms + res.network_ms + res.server_queue_ms + res.server_compute_ms,
        duration_s=requests * max(batch, 1) / res.throughput if res.throughput > 0 else span,
        detail=(
            f"perf_analyzer {protocol}, {window_ms} ms windows, {wall:.1f} s in all"
            + ("" if res.stable else ", unstable (stability band not held)")
            + f"; server queue {res.server_queue_ms:.3f} ms, compute {res.server_compute_ms:.3f} ms"
        ),
    )
