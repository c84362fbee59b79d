"""Throughput ratios of the embedding formats, measured side by side in one run."""

import pytest

from harness.embeddings.convert import format_cfg
from harness.embeddings.perf import interleaved_inprocess, served_perf
from harness.services.base import running

pytestmark = pytest.mark.perf
SERVED = ["onnx", "int8", "int8-dynamic", "int8-openvino"]


@pytest.fixture(scope="module")
def perf_numbers(embed_cfg, embed_conversions, tmp_path_factory):
    """In-process (interleaved) and served (perf_analyzer, seq 128, concurrency 8) throughput."""
    from harness.perf.analyzer import perf_analyzer_problem
    from harness.services.triton import make_triton

    problem = perf_analyzer_problem(embed_cfg)
    if problem:
        pytest.skip(problem)
    p = embed_cfg.embed.perf
    inproc = interleaved_inprocess(embed_cfg, SERVED, rounds=2)
    models = [format_cfg(embed_cfg, f).model for f in SERVED]
    server = make_triton(
        embed_cfg,
        "local",
        embed_cfg.embed.repository,
        models,
        work_dir=tmp_path_factory.mktemp("embed_perf"),
    )
    with running(server):
        rows = served_perf(
            embed_cfg,
            server,
            SERVED,
            seqs=[int(p.inprocess_seq)],
            concurrency=[8],
            work_dir=tmp_path_factory.mktemp("embed_perf_data"),
        )
    served = {r["format"]: r["throughput"] for r in rows}
    _report(embed_cfg, inproc, served)
    return inproc, served


def _report(cfg, inproc, served):
    """Record the measured ratios in reports/embeddings.md (before the floors are asserted)."""
    from harness.embeddings.report import write_report

    p = cfg.embed.perf
    best = max(served, key=served.get)
    write_report(
        cfg,
        ratios=[
            f"in-process batch {p.inprocess_batch} x seq {p.inprocess_seq}: "
            + ", ".join(f"{f} {v:.1f} seq/s" for f, v in inproc.items()),
            "served (perf_analyzer, seq 128, concurrency 8): "
            + ", ".join(f"{f} {v:.1f} infer/s" for f, v in served.items()),
            f"static int8 / fp32: {inproc['int8'] / inproc['onnx']:.2f}x in-process, "
            f"{served['int8'] / served['onnx']:.2f}x served "
            f"(floor {p.int8_over_fp32_min}, goal {p.int8_over_fp32_goal}); dynamic int8 / fp32: "
            f"{inproc['int8-dynamic'] / inproc['onnx']:.2f}x in-process",
            "static int8 on OpenVINO (QDQ) / fp32 ONNX Runtime: "
            f"{inproc['int8-openvino'] / inproc['onnx']:.2f}x in-process, "
            f"{served['int8-openvino'] / served['onnx']:.2f}x served "
            "(the asserted floor uses the faster static int8 format)",
            f"best served format {best}: served / in-process (same runtime, batch "
            f"{p.inprocess_batch}) = {served[best] / inproc[best]:.2f} "
            f"(floor {p.served_over_inprocess_min})",
        ],
    )


def test_int8_beats_fp32(embed_cfg, perf_numbers):
    """The faster calibrated static int8 format (ONNX Runtime QOperator, or QDQ on OpenVINO)."""
    inproc, served = perf_numbers
    best = max(("int8", "int8-openvino"), key=inproc.get)
    ratio = inproc[best] / inproc["onnx"]
    print(f"{best} / fp32 in-process {ratio:.2f}x, served {served[best] / served['onnx']:.2f}x")
    assert ratio >= embed_cfg.embed.perf.int8_over_fp32_min


def test_best_served_format_keeps_half_of_inprocess(embed_cfg, perf_numbers):
    inproc, served = perf_numbers
    best = max(served, key=served.get)
    ratio = served[best] / inproc[best]
    print(f"best served {best}: {served[best]:.1f} vs in-process {inproc[best]:.1f} = {ratio:.2f}")
    assert ratio >= embed_cfg.embed.perf.served_over_inprocess_min
