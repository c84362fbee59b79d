"""`harness tune`: sweep batching x instances with perf_analyzer; write triton.md (reports_dir)."""

from __future__ import annotations

import argparse

from harness.commands.args import add_overrides
from harness.config import compose


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register tune's options."""
    parser.add_argument(
        "--backend",
        choices=["local", "docker", "external"],
        help="where the server runs (default: triton.backend)",
    )
    parser.add_argument("--triton-url", help="external server HTTP URL")
    parser.add_argument("--triton-grpc-url", help="external server gRPC URL")
    parser.add_argument(
        "--apply",
        action="store_true",
        help="write the chosen settings into the canonical config.pbtxt",
    )
    parser.add_argument(
        "--quick", action="store_true", help="the reduced grid the tests use (triton.test)"
    )
    add_overrides(parser)


def run(args: argparse.Namespace) -> int:
    """Run the sweep and print the choice."""
    from harness.perf.tuning import run_tune

    cfg = compose(args.overrides)
    for line in run_tune(
        cfg,
        backend=args.backend,
        http_url=args.triton_url,
        grpc_url=args.triton_grpc_url,
        apply=args.apply,
        quick=args.quick,
    ):
        print(line)
    return 0
