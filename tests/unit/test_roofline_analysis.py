"""Roofline model: ridge, bound classification, attainable FLOP/s, totals, batch choice, roofs."""

from __future__ import annotations

import pytest

from harness.config import compose
from harness.errors import HarnessError
from harness.roofline import analysis, roofs
from harness.roofline.counting import LayerCount, LayerProfile


def _device(peak=100.0, bw=10.0, cache=()):
    return roofs.Device("cpu", "toy", peak, bw, "test", list(cache))


def _layer(flops, nbytes, name="l"):
    # fp32: bytes = elems * 4; put all traffic in the input for simplicity
    return LayerCount(name, "Toy", flops=flops, in_elems=nbytes // 4)


def test_bound_flips_at_the_ridge_point():
    d = _device()
    assert d.ridge == 10.0
    assert analysis.bound(9.999, d) == "memory"
    assert analysis.bound(10.0, d) == "compute"
    assert analysis.bound(10.001, d) == "compute"
    assert analysis.attainable(5.0, d) == 50.0  # AI x bandwidth under the ridge
    assert analysis.attainable(10.0, d) == 100.0
    assert analysis.attainable(1e6, d) == 100.0  # capped by the peak


def test_layer_time_is_the_slower_of_compute_and_memory():
    assert analysis.layer_time(1000, 400, 100.0, 10.0) == 40.0  # memory: 400 B / 10
    assert analysis.layer_time(1000, 40, 100.0, 10.0) == 10.0  # compute: 1000 / 100


def test_totals_are_the_sum_of_layers():
    d = _device()
    layers = [_layer(800, 400, "a"), _layer(0, 80, "b"), _layer(4000, 40, "c")]
    r = analysis.analyse_batch(layers, 4, d, batch=2)
    assert r.flops == sum(x.flops for x in layers)
    assert r.bytes == sum(x.bytes(4) for x in layers)
    assert r.time == pytest.approx(sum(lr.time for lr in r.layers)) == 40 + 8 + 40
    assert [lr.bound for lr in r.layers] == ["memory", "memory", "compute"]
    assert r.memory_bound == 2
    assert r.intensity == pytest.approx(4800 / 520)


def test_cache_roofs_govern_small_working_sets():
    d = _device(cache=[roofs.MemoryRoof("L2", 50.0, 1000), roofs.MemoryRoof("L3", 20.0, 10_000)])
    assert d.bandwidth_for(800, cache_aware=True) == ("L2", 50.0)
    assert d.bandwidth_for(5000, cache_aware=True) == ("L3", 20.0)
    assert d.bandwidth_for(50_000, cache_aware=True) == ("DRAM", 10.0)
    assert d.bandwidth_for(800, cache_aware=False) == ("DRAM", 10.0)


def test_choose_batch_finds_best_and_saturation():
    d = _device()
    # weights (constant 400 B) amortise with the batch; compute 100 FLOP and 4 B per sample
    prof = LayerProfile(
        "l",
        "Toy",
        {"flops": 0, "weight_elems": 100, "in_elems": 0, "out_elems": 0, "other_bytes": 0},
        {"flops": 100, "weight_elems": 0, "in_elems": 1, "out_elems": 0, "other_bytes": 0},
    )
    batches = [1, 2, 4, 8, 16, 32, 64, 128]
    res = analysis.analyse([prof], 4, [d], batches)["cpu"]
    tput = [r.throughput for r in res]
    assert tput == sorted(tput)  # more batch, more reuse
    c = analysis.choose_batch(res, d, 0.9)
    assert c.best == 128
    first = min(r.batch for r in res if r.throughput >= 0.9 * max(tput))
    assert c.chosen == first == 64
    ridge_batches = [r.batch for r in res if r.intensity >= d.ridge]
    assert c.compute_bound_from == (min(ridge_batches) if ridge_batches else None)


def test_gpu_table_has_h100_and_h200_with_all_precisions():
    cfg = compose([])
    for key in ("h100_sxm", "h200"):
        g = cfg.roofline.gpus[key]
        assert set(g.peak_flops) >= {"fp32", "tf32", "fp16", "bf16"}
        assert g.bandwidth > 1e12
        d16 = roofs.gpu_device(key, cfg, "fp16")
        assert d16.peak_flops == g.peak_flops.fp16
        assert d16.ridge == pytest.approx(g.peak_flops.fp16 / g.bandwidth)
    # H200 = H100 compute with more HBM bandwidth: lower ridge point
    assert (
        roofs.gpu_device("h200", cfg, "fp32").ridge
        < roofs.gpu_device("h100_sxm", cfg, "fp32").ridge
    )
    with pytest.raises(HarnessError, match="unknown device 'tpu'"):
        roofs.gpu_device("tpu", cfg, "fp32")


def test_cpu_roofs_from_a_sweep():
    m = roofs.CpuMeasurement(
        1,
        64,
        "fp32",
        [1e9, 2e9],
        {
            64: [{"triad": 50e9, "copy": 40e9}],
            1024: [{"triad": 30e9, "copy": 35e9}],
            65536: [{"triad": 10e9, "copy": 9e9}, {"triad": 12e9, "copy": 8e9}],
        },
        {"L1": 32 * 1024, "L2": 1024 * 1024, "L3": 8 * 1024 * 1024},
        0.1,
    )
    dram, cache = m.roofs()
    assert dram == 12e9
    assert [(r.name, r.bandwidth) for r in cache] == [("L2", 50e9), ("L3", 35e9)]
    assert roofs.cpu_device(m).peak_flops == 2e9
    small = roofs.CpuMeasurement(1, 64, "fp32", [1e9], {64: [{"triad": 1.0, "copy": 1.0}]},
                                 {"L3": 8 * 1024 * 1024}, 0.1)  # fmt: skip
    with pytest.raises(HarnessError, match="does not exceed the last-level cache"):
        small.roofs()


def test_bad_overrides_are_one_line_errors(tmp_path, capsys):
    from harness.cli import main

    report = tmp_path / "r.md"
    for override, msg in [
        ("roofline.model=resnet", "roofline.model='resnet'"),
        ("roofline.dtype=int8", "roofline.dtype='int8'"),
        ("roofline.batch_sizes=[0,2]", "distinct positive integers"),
        ("roofline.devices=[cpu,tpu]", "unknown device 'tpu'"),
    ]:
        rc = main(["roofline", override, f"roofline.output.report={report}"])
        err = capsys.readouterr().err.strip()
        assert rc != 0 and msg in err and len(err.splitlines()) == 1, err
    assert not list(tmp_path.iterdir())  # no partial output


def test_short_forms_are_aliases_of_the_roofline_keys():
    from harness.commands.roofline import expand_aliases

    assert expand_aliases(
        ["model=minilm", "batch_sizes=[1,8]", "dtype=fp16", "model.channels=8"]
    ) == [
        "roofline.model=minilm",
        "roofline.batch_sizes=[1,8]",
        "roofline.dtype=fp16",
        "model.channels=8",
    ]
    cfg = compose(expand_aliases(["model=cnn", "dtype=fp16", "devices=[h200]"]))
    assert (cfg.roofline.model, cfg.roofline.dtype, list(cfg.roofline.devices)) == (
        "cnn",
        "fp16",
        ["h200"],
    )
