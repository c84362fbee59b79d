"""The load engines of `harness verify inference` against a real OIP server: the embedded
tritonserver serving the fixture classifier (mnist-onnx, input `images` FP32 [n,1,28,28])."""

from __future__ import annotations

import os
import subprocess
import time

import numpy as np
import pytest

from harness.errors import HarnessError
from harness.perf.tools import perf_analyzer_problem
from harness.services.triton import make_triton
from harness.testing.fixtures_triton import make_fixture_repository
from harness.verify import load
from harness.verify.load import LoadResult, run_locust, run_perf_analyzer_load

pytestmark = pytest.mark.integration

MODEL = "mnist-onnx"


@pytest.fixture(scope="module")
def load_cfg(triton_cfg):
    """The `verify.inference.load` settings."""
    return triton_cfg.verify.inference.load


@pytest.fixture(scope="module")
def oip_server(triton_cfg, tmp_path_factory):
    """The embedded tritonserver (local backend) serving the fixture model."""
    repo = make_fixture_repository(triton_cfg, tmp_path_factory.mktemp("load_repo"))
    server = make_triton(triton_cfg, "local", repo, work_dir=tmp_path_factory.mktemp("load_srv"))
    with server:
        yield server


def _body(batch: int = 1) -> dict:
    x = np.random.default_rng(0).random((batch, 1, 28, 28), dtype=np.float32)
    return {
        "inputs": [
            {
                "name": "images",
                "shape": list(x.shape),
                "datatype": "FP32",
                "data": x.ravel().tolist(),
            }
        ]
    }


@pytest.fixture
def started(monkeypatch) -> list[subprocess.Popen]:
    """Every process the test starts with subprocess.Popen (Locust runs in its own session)."""
    procs: list[subprocess.Popen] = []

    class Recording(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            procs.append(self)

    monkeypatch.setattr(subprocess, "Popen", Recording)
    return procs


def _group_gone(pgid: int, wait_s: float = 5.0) -> bool:
    """True once no process is left in the process group (orphaned workers included)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def _no_orphans(procs: list[subprocess.Popen]) -> None:
    locust = [p for p in procs if "locust" in p.args]
    assert locust, "no Locust process was started"
    for p in locust:
        assert p.returncode is not None and _group_gone(p.pid), p.args


def _check_sane(r: LoadResult, duration_s: float, batch: int = 1) -> None:
    assert r.requests > 0 and r.failures == 0, r
    assert 0 < r.p50_ms <= r.p90_ms <= r.p99_ms, r
    assert r.avg_ms > 0 and r.throughput > 0
    # Throughput is what the requests over the covered span give, and that span is most of the
    # asked-for run (start-up and the ramp are outside it).
    assert r.throughput == pytest.approx(r.requests * batch / r.duration_s, rel=0.02)
    assert 0.5 * duration_s <= r.duration_s <= duration_s + 1.0, r
    assert r.throughput == pytest.approx(r.requests * batch / duration_s, rel=0.5)


def test_locust_one_process(oip_server, load_cfg, tmp_path, started):
    duration = float(load_cfg.duration_s)
    r = run_locust(
        oip_server.url,
        MODEL,
        _body(),
        concurrency=int(load_cfg.concurrency),
        duration_s=duration,
        work_dir=tmp_path,
    )
    assert r.engine == "locust" and r.concurrency == int(load_cfg.concurrency)
    _check_sane(r, duration)
    assert (tmp_path / "locust_stats.csv").is_file()  # work_dir keeps Locust's own files
    _no_orphans(started)


def test_locust_master_and_workers(oip_server, started):
    r = run_locust(
        oip_server.url, MODEL, _body(2), concurrency=4, duration_s=4, processes=2, batch=2
    )
    _check_sane(r, 4, batch=2)
    assert "2 worker processes" in r.detail
    _no_orphans(started)


def test_wrong_model_name_counts_failures(oip_server):
    r = run_locust(oip_server.url, "no-such-model", _body(), concurrency=2, duration_s=2)
    assert r.requests > 0 and r.failures == r.requests
    assert r.throughput == 0.0
    assert "HTTP 404" in r.detail


def test_locust_timeout_kills_the_process_group(oip_server, monkeypatch, started):
    monkeypatch.setattr(load, "_MARGIN_S", -31.0)  # limit = 2 + 1 + 30 - 31 = 2 s: too short
    with pytest.raises(HarnessError, match="did not finish"):
        run_locust(oip_server.url, MODEL, _body(), concurrency=1, duration_s=2, processes=2)
    _no_orphans(started)


def test_locust_and_perf_analyzer_on_the_same_server(oip_server, triton_cfg, load_cfg, capsys):
    problem = perf_analyzer_problem(triton_cfg)
    if problem:
        pytest.skip(problem)
    n, duration = int(load_cfg.concurrency), float(load_cfg.duration_s)
    loc = run_locust(oip_server.url, MODEL, _body(), concurrency=n, duration_s=duration)
    pa = run_perf_analyzer_load(
        triton_cfg, oip_server.http_address, MODEL, concurrency=n, duration_s=duration
    )
    _check_sane(loc, duration)
    assert pa.engine == "perf_analyzer" and pa.requests > 0 and pa.failures == 0
    assert 0 < pa.p50_ms <= pa.p90_ms <= pa.p99_ms and pa.throughput > 0 and pa.avg_ms > 0
    with capsys.disabled():
        for r in (loc, pa):
            print(
                f"\n{r.engine:>13} c={r.concurrency}: {r.throughput:8.1f} infer/s, "
                f"p50 {r.p50_ms:.2f} p90 {r.p90_ms:.2f} p99 {r.p99_ms:.2f} avg {r.avg_ms:.2f} ms, "
                f"{r.requests} requests in {r.duration_s:.1f} s ({r.detail})"
            )
