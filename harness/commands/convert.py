"""`harness convert`: convert MiniLM to ONNX / OpenVINO / fp16 / int8 / TensorRT (cached)."""

from __future__ import annotations

import argparse
import logging

from harness.commands.args import add_overrides

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `harness convert`."""
    parser.add_argument(
        "--formats",
        default=None,
        help="comma-separated formats (default: embed.default_formats, the CPU ones); "
        "e.g. onnx,openvino,fp16,int8,int8-dynamic,trt-fp32,trt-fp16,trt-int8",
    )
    parser.add_argument("--force", action="store_true", help="ignore the conversion cache")
    parser.add_argument(
        "--configs", action="store_true", help="only (re)write the canonical config.pbtxt files"
    )
    parser.add_argument(
        "--report", action="store_true", help="write the embeddings report into paths.reports_dir"
    )
    add_overrides(parser)


def run(args: argparse.Namespace) -> int:
    """Convert, install into model_repository/ and print what each format's checks measured."""
    from harness.config import compose
    from harness.embeddings.convert import convert_formats
    from harness.embeddings.repository import write_configs

    cfg = compose(args.overrides)
    written = write_configs(cfg.embed)
    if written:
        log.info("wrote config.pbtxt of %s", ", ".join(written))
    if args.configs:
        return 0
    formats = [f.strip() for f in args.formats.split(",") if f.strip()] if args.formats else None
    results = convert_formats(cfg, formats, force=args.force)
    for r in results:
        if r.skipped:
            print(f"{r.format:14s} skipped: {r.skipped}")
            continue
        checks = " ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.checks.items()
        )
        how = "cached" if r.cached else "converted"
        print(f"{r.format:14s} {how:9s} {r.seconds:6.1f}s {r.path}  {checks}")
    if args.report:
        from harness.embeddings.report import write_report

        print(f"report: {write_report(cfg, conversions=results)}")
    return 0
