"""perf_analyzer output parsing, sweep grid and choice, service factory (no server)."""

from __future__ import annotations

import pytest

from harness.config import compose
from harness.errors import HarnessError
from harness.perf.analyzer import PerfResult, parse_csv, parse_server_counts
from harness.perf.tune import Trial, Variant, alone_budget, choose, finalists, grid
from harness.services.triton import ExternalTriton, free_ports, make_triton

# The shape of perf_analyzer 2.41's `-f` CSV and summary (values from a run on this machine).
CSV = (
    "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,"
    "Server Compute Input,Server Compute Infer,Server Compute Output,Client Recv,p50 latency,"
    "p90 latency,p95 latency,p99 latency,Avg latency,request/response,response wait\n"
    "8,4449.69,2,777,401,31,396,183,0,1394,2416,3779,8109,1794,2,1785\n"
)
STDOUT = """Request concurrency: 8
  Client:
    Request count: 24311
    Throughput: 4449.69 infer/sec
  Server:
    Inference count: 24313
    Execution count: 7027
"""


def test_parse_csv_converts_microseconds_to_milliseconds():
    (r,) = parse_csv(CSV)
    assert r.concurrency == 8 and r.throughput == pytest.approx(4449.69)
    assert (r.p50_ms, r.p90_ms, r.p95_ms, r.p99_ms) == pytest.approx((1.394, 2.416, 3.779, 8.109))
    assert r.server_queue_ms == pytest.approx(0.401)
    assert r.server_compute_ms == pytest.approx(0.031 + 0.396 + 0.183)


def test_parse_rejects_non_perf_analyzer_csv():
    with pytest.raises(HarnessError, match="Inferences/Second"):
        parse_csv("a,b\n1,2\n")


def test_parse_server_counts():
    assert parse_server_counts(STDOUT) == {8: (24313, 7027)}


def test_full_grid_matches_the_issue():
    cfg = compose([])
    t = cfg.triton.tune
    variants = grid(t.batching, t.max_queue_delay_microseconds, t.instance_count, [1])
    # no batching + 7 delays, for 1 and 2 instances
    assert len(variants) == 16
    assert sum(not v.batching for v in variants) == 2


def _trial(batching, delay, tput, p99):
    r = PerfResult(8, tput, 1, 1, 1, p99, 1, 0, 0, 0, 0)
    return Trial(Variant(batching, delay, 1, 1), r)


def test_choose_highest_throughput_within_budget():
    trials = [
        _trial(False, None, 1000, 2),
        _trial(True, 100, 3000, 4),
        _trial(True, 4000, 5000, 30),
    ]
    best, why = choose(trials, budget_p99_ms=10)
    assert best.variant.delay_us == 100 and "within the 10 ms budget" in why
    best, why = choose(trials, budget_p99_ms=1)
    assert best.variant.delay_us is None and "no config met" in why


def test_choose_keeps_the_config_in_use_unless_clearly_faster():
    trials = [
        _trial(True, 100, 7846, 1.7),
        _trial(True, 500, 8100, 1.5),
        _trial(False, None, 4273, 2),
    ]
    current = trials[0].variant
    best, why = choose(trials, 25, keep=current, min_gain=0.05)
    assert best.variant == current and "kept" in why and "3.2% ahead" in why
    trials[1].target = PerfResult(8, 8477, 1, 1, 1, 1.5, 1, 0, 0, 0, 0)  # 8.0 % ahead
    best, why = choose(trials, 25, keep=current, min_gain=0.05)
    assert best.variant.delay_us == 500 and "highest throughput" in why
    # The config in use out of budget is no reason to keep it.
    best, _ = choose(trials, 1.6, keep=current, min_gain=0.5)
    assert best.variant.delay_us == 500


def test_a_lone_request_held_back_by_the_queue_delay_rules_a_config_out():
    fast, quick_alone = _trial(True, 4000, 8465, 1.5), _trial(True, 100, 7891, 1.7)
    fast.alone = PerfResult(1, 205, 4.82, 5.05, 5.11, 5.26, 4.1, 0, 0, 0, 0)
    quick_alone.alone = PerfResult(1, 2300, 0.45, 0.5, 0.52, 0.6, 0.1, 0, 0, 0, 0)
    assert not fast.within(25, alone_p50_ms=1.0) and fast.within(25)
    best, why = choose([fast, quick_alone], 25, alone_p50_ms=1.0)
    assert best is quick_alone and "lone request's p50 within 1.00 ms" in why
    assert choose([fast, quick_alone], 25)[0] is fast


def test_alone_budget_is_relative_to_the_fastest_unbatched_config():
    a, b, batched = _trial(False, None, 1, 1), _trial(False, None, 1, 1), _trial(True, 100, 1, 1)
    for t, p50 in ((a, 0.40), (b, 0.35), (batched, 0.1)):
        t.alone = PerfResult(1, 1, p50, 1, 1, 1, 0, 0, 0, 0, 0)
    assert alone_budget([a, b, batched], 2.0) == pytest.approx(0.70)
    assert alone_budget([a, b, batched], None) is None
    assert alone_budget([batched], 2.0) is None  # nothing unbatched to compare with


def test_finalists_are_the_fastest_within_budget_plus_the_config_in_use():
    trials = [
        _trial(True, d, t, p) for d, t, p in [(0, 10, 1), (50, 30, 1), (100, 20, 1), (500, 90, 99)]
    ]
    picked = finalists(trials, 10, top=2, keep=trials[0].variant)
    assert [t.variant.delay_us for t in picked] == [50, 100, 0]
    assert [t.variant.delay_us for t in finalists(trials, 10, top=2)] == [50, 100]
    assert [t.variant.delay_us for t in finalists(trials, 0.5, top=1)] == [500]


def test_factory_and_external_urls():
    cfg = compose([])
    ext = make_triton(cfg, "external", http_url="http://10.0.0.5:8000", grpc_url="10.0.0.5:8001")
    assert isinstance(ext, ExternalTriton)
    assert ext.url == "http://10.0.0.5:8000" and ext.grpc_url == "10.0.0.5:8001"
    with pytest.raises(HarnessError, match="needs --triton-url"):
        make_triton(compose(["triton.external.http_url=null"]), "external")
    with pytest.raises(HarnessError, match="unknown Triton backend"):
        make_triton(cfg, "kubernetes")
    with pytest.raises(HarnessError, match="host:port"):
        make_triton(cfg, "external", http_url="nonsense")


def test_free_ports_are_distinct():
    assert len(set(free_ports(3))) == 3
