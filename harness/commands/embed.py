"""`harness embed compare|perf|text`: serve MiniLM formats with Triton, compare and measure."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from harness.commands.args import add_overrides
from harness.errors import HarnessError

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `harness embed` (one sub-command per action, each taking Hydra overrides)."""
    actions = {
        "compare": "compare every served format with the oracle and each other (report + heatmap)",
        "perf": "perf_analyzer per format (seq 32/128, concurrency 1/8) and in-process throughput",
        "text": "print the first dimensions of the embeddings of --text sentences",
    }
    sub = parser.add_subparsers(dest="action", metavar="<action>", required=True)
    for name, summary in actions.items():
        p = sub.add_parser(name, help=summary, description=summary)
        p.add_argument("--formats", default=None, help="comma-separated formats to serve")
        p.add_argument(
            "--backend",
            default=None,
            choices=["local", "docker", "external"],
            help="Triton backend",
        )
        p.add_argument("--triton-url", default=None, help="HTTP URL of an external Triton")
        p.add_argument("--triton-grpc-url", default=None, help="gRPC URL of an external Triton")
        p.add_argument("--no-convert", action="store_true", help="do not convert missing formats")
        p.add_argument("--text", action="append", default=[], help="sentence(s) for `text`")
        add_overrides(p)


def _formats(cfg, arg: str | None) -> list[str]:
    from harness.embeddings.serving import require_formats

    formats = (
        [f.strip() for f in arg.split(",") if f.strip()] if arg else list(cfg.embed.default_formats)
    )
    require_formats(cfg, formats)
    return formats


def run(args: argparse.Namespace) -> int:
    """Convert (cached), start Triton with the formats, run the action, stop Triton."""
    from harness.config import compose
    from harness.embeddings.convert import convert_formats
    from harness.embeddings.report import write_report
    from harness.embeddings.serving import compare_served, make_server, servable_formats
    from harness.services.base import running
    from harness.serving.client import TritonClient

    cfg = compose(args.overrides)
    formats = _formats(cfg, args.formats)
    if args.action == "text" and not args.text:
        raise HarnessError("`harness embed text` needs at least one --text SENTENCE")
    conversions = None
    if not args.no_convert and (args.backend or cfg.triton.backend) != "external":
        conversions = convert_formats(cfg, [f for f in formats if not f.startswith("trt-")])
    served, skipped = servable_formats(cfg, formats)
    for fmt, why in skipped.items():
        log.warning("format %s left out: %s", fmt, why)
    if not served:
        raise HarnessError("none of the formats can be served here: " + "; ".join(skipped.values()))
    server = make_server(
        cfg, served, args.backend, http_url=args.triton_url, grpc_url=args.triton_grpc_url
    )
    with running(server):
        with TritonClient(server.http_address, cfg.embed.compare.protocol) as client:
            if args.action == "text":
                from harness.embeddings.serving import embed_served

                out = {f: embed_served(client, cfg, f, args.text)[:, :8].tolist() for f in served}
                json.dump(out, sys.stdout, indent=1)
                print()
                return 0
            if args.action == "compare":
                cmp = compare_served(cfg, client, served, skipped)
                path = write_report(cfg, cmp, conversions)
                for fmt, s in cmp.vs_oracle.items():
                    bad = cmp.failures[fmt] + cmp.blowups[fmt]
                    print(
                        f"{fmt:14s} max|Δ|={s.max_abs:.2e} mean‖Δ‖={s.mean_norm:.2e} "
                        f"cos={s.mean_cosine:.5f} top1={s.top1_agreement:.1%} "
                        + ("ok" if not bad else "FAIL " + "; ".join(bad))
                    )
                print(f"report: {path}")
                return 0 if cmp.ok else 1
        from harness.embeddings.perf import interleaved_inprocess, served_perf

        rows = served_perf(cfg, server, served)
        inproc = interleaved_inprocess(cfg, served, rounds=1)
        perf = {
            "served": rows,
            "inprocess": [
                {
                    "format": f,
                    "batch": cfg.embed.perf.inprocess_batch,
                    "seq": cfg.embed.perf.inprocess_seq,
                    "throughput": v,
                }
                for f, v in inproc.items()
            ],
        }
        path = write_report(cfg, conversions=conversions, perf=perf)
        for r in rows:
            print(
                f"{r['format']:14s} seq={r['seq']:<4d} c={r['concurrency']:<2d} "
                f"{r['throughput']:8.1f} infer/s p50={r['p50_ms']:.1f}ms p99={r['p99_ms']:.1f}ms"
            )
        print(f"report: {path}")
        return 0
