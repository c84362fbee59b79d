"""`harness tools install|check`: the external tools the perf tier needs."""

from __future__ import annotations

import argparse

from harness.commands.args import add_overrides
from harness.config import compose


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the tools sub-actions."""
    parser.add_argument("action", choices=["install", "check"], help="install or check tools")
    add_overrides(parser)


def run(args: argparse.Namespace) -> int:
    """Install or check perf_analyzer; report what is missing and why."""
    from harness.perf.tools import install_perf_analyzer, perf_analyzer_problem

    cfg = compose(args.overrides)
    if args.action == "install":
        install_perf_analyzer(cfg)
    problem = perf_analyzer_problem(cfg)
    if problem:
        print(f"perf_analyzer: NOT usable: {problem}")
        # Missing system libraries are reported, not fatal: perf tests skip with the reason.
        return 1 if args.action == "check" else 0
    print("perf_analyzer: ok")
    return 0
