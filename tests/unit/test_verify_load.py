"""Locust CSV parsing and the load runners' argument checks (no server, no Locust run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import compose
from harness.errors import HarnessError
from harness.verify import load
from harness.verify.load import (
    LOCUSTFILE,
    parse_locust_failures,
    parse_locust_stats,
    run_locust,
    run_perf_analyzer_load,
)

DATA = Path(__file__).resolve().parent / "data"


def test_aggregated_row_of_a_real_locust_csv():
    text = (DATA / "locust_stats.csv").read_text()
    r = parse_locust_stats(text, concurrency=8, batch=1, duration_s=3)
    assert (r.engine, r.concurrency, r.requests, r.failures) == ("locust", 8, 3852, 0)
    assert (r.p50_ms, r.p90_ms, r.p99_ms) == (3.0, 6.0, 10.0)
    assert r.avg_ms == pytest.approx(3.6693417133961845)
    assert r.throughput == pytest.approx(1925.8845195873555)
    # Requests/s is Request Count over the span it covers.
    assert r.duration_s == pytest.approx(3852 / 1925.8845195873555)


def test_throughput_counts_inferences_of_successful_requests():
    text = (DATA / "locust_stats.csv").read_text()
    assert parse_locust_stats(text, concurrency=8, batch=4).throughput == pytest.approx(
        4 * 1925.8845195873555
    )
    failed = parse_locust_stats(
        (DATA / "locust_stats_failed.csv").read_text(), concurrency=2, duration_s=2
    )
    assert failed.requests == failed.failures == 3769
    assert failed.throughput == 0.0


def test_failures_csv_gives_one_line():
    line = parse_locust_failures((DATA / "locust_failures.csv").read_text())
    assert line.startswith("3769x ") and "HTTP 404" in line and "\n" not in line


def test_no_aggregated_row_or_column_is_a_harness_error():
    with pytest.raises(HarnessError, match="Aggregated"):
        parse_locust_stats("Type,Name,Request Count\nPOST,infer,3\n", concurrency=1)
    with pytest.raises(HarnessError, match="Failure Count. column"):
        parse_locust_stats("Type,Name,Request Count\n,Aggregated,3\n", concurrency=1)


def test_empty_run_percentiles_are_zero():
    header = (DATA / "locust_stats.csv").read_text().splitlines()[1]
    na = ",".join(["N/A"] * 11)
    text = f"{header}\n,Aggregated,0,0,0,0.0,0,0,0,0.0,0.0,{na}\n"
    r = parse_locust_stats(text, concurrency=2, duration_s=5)
    assert (r.requests, r.p50_ms, r.throughput, r.duration_s) == (0, 0.0, 0.0, 5)


def test_locustfile_ships_in_the_package():
    assert LOCUSTFILE.is_file() and LOCUSTFILE.parent == Path(load.__file__).parent


def test_bad_arguments_are_rejected_before_starting_locust():
    with pytest.raises(HarnessError, match="concurrency"):
        run_locust("http://127.0.0.1:1", "m", {}, concurrency=0, duration_s=1)


def test_missing_perf_analyzer_names_the_install_command(tmp_path):
    cfg = compose([f"perf.perf_analyzer.tools_dir={tmp_path}"])
    with pytest.raises(HarnessError, match="harness tools install"):
        run_perf_analyzer_load(cfg, "127.0.0.1:1", "m", concurrency=1, duration_s=1)
