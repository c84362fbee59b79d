"""Side-by-side load on loopback (wrk -t2 -c32): nginx and the Python fallback against
`python -m http.server` on the same pool, in one run; and `verify` of 2,000 files against a bare
sequential download loop.

Every floor is a ratio measured within one interleaved round, judged on the median over rounds,
and asserted whatever the machine's load (a missed floor fails with the load in its message);
requests per server CPU-second are reported, never asserted.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest
import requests

from harness.files.pool import MANIFEST, PoolSpec, build_pool, parse_manifest
from harness.files.verify import verify
from harness.services import LocalProcess, free_port, http_ok
from harness.services.fileserver import LocalFileServer

pytestmark = pytest.mark.perf

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


@dataclass
class WrkResult:
    """What one wrk run measured."""

    name: str
    requests: int
    seconds: float
    non_2xx: int
    socket_errors: int
    timeouts: int
    p99_ms: float

    @property
    def ok_per_s(self) -> float:
        """Successful (2xx) responses per second: failures and time-outs do not count."""
        return (self.requests - self.non_2xx) / self.seconds


def parse_wrk(name: str, text: str) -> WrkResult:
    """Parse `wrk --latency` output."""
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m),", text)
    assert m, text
    seconds = float(m.group(2)) * _UNITS[m.group(3)] / 1e3
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    p99 = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
    errors = [int(x) for x in sock.groups()] if sock else [0, 0, 0, 0]
    return WrkResult(
        name=name,
        requests=int(m.group(1)),
        seconds=seconds,
        non_2xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors=sum(errors[:3]),
        timeouts=errors[3],
        p99_ms=float(p99.group(1)) * _UNITS[p99.group(2)] if p99 else float("nan"),
    )


def group_cpu_seconds(pgid: int) -> float:
    """CPU time (user + system) used so far by the live processes of process group `pgid`."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def _priority(pc) -> list[str]:
    """argv prefix giving the benchmark (servers and wrk alike) the configured niceness.

    On a shared machine CFS splits the CPU per thread: http.server's 32 threads would out-weigh
    nginx's 2 workers against busy neighbours. Equal, raised priority (root only) for all three
    servers and the load generator keeps the comparison about the servers.
    """
    if pc.nice == 0 or shutil.which("nice") is None:
        return []
    probe = subprocess.run(["nice", "-n", str(pc.nice), "true"], capture_output=True)
    return ["nice", "-n", str(pc.nice)] if probe.returncode == 0 and not probe.stderr else []


def _wrk(pc, url: str, script: Path) -> str:
    argv = _priority(pc) + [
        "wrk",
        f"-t{pc.wrk_threads}",
        f"-c{pc.connections}",
        f"-d{pc.duration_s}s",
        f"--timeout={pc.wrk_timeout_s}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=pc.duration_s + 30)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _combine(name: str, runs: list[WrkResult]) -> WrkResult:
    """Totals over rounds; the worst round's p99."""
    return WrkResult(
        name=name,
        requests=sum(r.requests for r in runs),
        seconds=sum(r.seconds for r in runs),
        non_2xx=sum(r.non_2xx for r in runs),
        socket_errors=sum(r.socket_errors for r in runs),
        timeouts=sum(r.timeouts for r in runs),
        p99_ms=max(r.p99_ms for r in runs),
    )


def test_requests_per_second_ratios(files_cfg, tmp_path: Path) -> None:
    from harness.files.nginx import nginx_binary

    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (Debian: apt-get install wrk)")
    if nginx_binary() is None:
        pytest.skip("nginx is not installed: the nginx ratio cannot be measured")
    pc = files_cfg.files.perf
    load_before = os.getloadavg()[0]
    root = build_pool(tmp_path / "pool", PoolSpec(count=pc.pool_count, max_size=pc.small_max_size))
    paths = [rel for _, rel in parse_manifest((root / MANIFEST).read_text())]
    script = tmp_path / "paths.lua"
    # Each wrk thread cycles through every file of the pool, not one cached URL.
    script.write_text(
        "local paths = {" + ",".join(json.dumps("/" + p) for p in paths) + "}\n"
        "local i = 0\n"
        "request = function()\n"
        "  i = i + 1\n"
        '  return wrk.format("GET", paths[(i % #paths) + 1])\n'
        "end\n"
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    stdlib = LocalProcess(
        "http.server",
        _priority(pc)
        + [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", root, port],
        url=base,
        ready_check=lambda: http_ok(f"{base}/{MANIFEST}"),
        log_path=tmp_path / "http.server.log",
    )
    servers = {
        "nginx": LocalFileServer(root, files_cfg.files.server, impl="nginx", wrap=_priority(pc)),
        "python": LocalFileServer(root, files_cfg.files.server, impl="python", wrap=_priority(pc)),
        "http.server": stdlib,
    }
    runs: dict[str, list[WrkResult]] = {k: [] for k in servers}
    cpu = {k: 0.0 for k in servers}
    try:
        for srv in servers.values():
            srv.start()
        # Interleaved rounds: a busy neighbour on the machine slows every server alike.
        for _ in range(pc.rounds):
            for name, srv in servers.items():
                before = group_cpu_seconds(srv.pid)
                runs[name].append(parse_wrk(name, _wrk(pc, srv.url, script)))
                cpu[name] += group_cpu_seconds(srv.pid) - before
    finally:
        for srv in servers.values():
            srv.stop()
    load_after = os.getloadavg()[0]
    results = {name: _combine(name, rs) for name, rs in runs.items()}

    # The asserted metric, whatever the load: requests/s over http.server's in the same round,
    # median over rounds.
    per_round = {
        k: [a.ok_per_s / b.ok_per_s for a, b in zip(runs[k], runs["http.server"])]
        for k in ("nginx", "python")
    }
    ratio = {k: statistics.median(v) for k, v in per_round.items()}
    # Successful requests per CPU-second of each server: reported only, never asserted.
    per_cpu = {k: (r.requests - r.non_2xx) / max(cpu[k], 1e-3) for k, r in results.items()}
    cpu_ratio = {k: per_cpu[k] / per_cpu["http.server"] for k in ("nginx", "python")}
    summary = {k: {**asdict(v), "ok_per_s": round(v.ok_per_s, 1)} for k, v in results.items()}
    summary |= {
        "median_ratio_vs_http_server": ratio,
        "round_ratios": per_round,
        "ok_per_cpu_s": per_cpu,
        "cpu_ratio_reported": cpu_ratio,
        "load_before_after": [load_before, load_after],
    }
    (tmp_path / "files-perf.json").write_text(json.dumps(summary, indent=2))
    print(
        f"\nfile server load (wrk -t{pc.wrk_threads} -c{pc.connections}, "
        f"{pc.rounds} x {pc.duration_s}s each, {len(paths)} small files):"
    )
    for k, v in results.items():
        print(
            f"  {k:12s} {v.ok_per_s:9.0f} ok req/s  p99 {v.p99_ms:8.2f} ms  "
            f"non-2xx {v.non_2xx}  socket errors {v.socket_errors}  timeouts {v.timeouts}  "
            f"{per_cpu[k]:7.0f} ok req/CPU-s"
        )
    print(
        f"  median ratio vs http.server: nginx {ratio['nginx']:.1f}x, "
        f"python {ratio['python']:.1f}x"
    )
    print(
        f"  per server CPU-second (reported only): nginx {cpu_ratio['nginx']:.1f}x, "
        f"python {cpu_ratio['python']:.1f}x"
    )

    for impl in ("nginx", "python"):
        r = results[impl]
        assert r.non_2xx == 0 and r.socket_errors == 0 and r.timeouts == 0, r
    cpus = os.cpu_count() or 1
    where = f"load {load_before:.1f} before, {load_after:.1f} after, on {cpus} CPUs"
    for impl, floor in (("nginx", pc.min_ratio_nginx), ("python", pc.min_ratio_python)):
        rounds = ", ".join(f"{x:.1f}" for x in per_round[impl])
        assert ratio[impl] >= floor, (
            f"{impl} served {ratio[impl]:.1f}x http.server's requests/s (median of rounds "
            f"{rounds}); floor {floor}x ({where})"
        )


def _bare_download(url: str, entries: list[tuple[str, str]]) -> float:
    """Files/s of the plainest correct check: one requests session, sequential, sha256 each."""
    session = requests.Session()
    start = time.perf_counter()
    try:
        for digest, rel in entries:
            got = hashlib.sha256(session.get(f"{url}/{rel}", timeout=10).content).hexdigest()
            assert got == digest, rel
    finally:
        session.close()
    return len(entries) / (time.perf_counter() - start)


def test_verify_2000_files(files_cfg, tmp_path: Path) -> None:
    pc = files_cfg.files.perf
    root = build_pool(tmp_path / "pool", PoolSpec(count=pc.verify_files, seed=7))
    entries = parse_manifest((root / MANIFEST).read_text())
    ratios, reports = [], []
    with LocalFileServer(root, files_cfg.files.server) as srv:
        impl = srv.impl
        # Interleaved rounds against the same server: verify, then the bare loop.
        for _ in range(int(pc.verify_rounds)):
            report = verify(srv.url, progress=False, jobs=pc.verify_jobs)
            reports.append(report)
            ratios.append(report.files_per_s / _bare_download(srv.url, entries))
    ratio = statistics.median(ratios)
    print(f"\nverify via {impl}: {reports[-1].summary()}")
    print(f"  verify / bare sequential download: {', '.join(f'{r:.2f}' for r in ratios)}")
    assert all(r.ok and r.total == pc.verify_files for r in reports)
    floor = float(pc.min_verify_over_bare)
    assert ratio >= floor, (
        f"verify ran at {ratio:.2f}x a bare sequential download+sha256 loop (median of rounds "
        f"{', '.join(f'{r:.2f}' for r in ratios)}); floor {floor}x "
        f"(load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
    )
