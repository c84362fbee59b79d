"""`harness data prepare|describe|push|pull`: build, inspect and version the data set."""

from __future__ import annotations

import argparse

from harness.commands.args import add_overrides
from harness.config import compose


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the data sub-actions."""
    parser.add_argument(
        "action",
        choices=["prepare", "describe", "push", "pull"],
        help="prepare: build the digits IDX files; describe: print split sizes and classes; "
        "push/pull: DVC to/from the remote",
    )
    parser.add_argument("--force", action="store_true", help="prepare: rebuild existing files")
    add_overrides(parser)


def run(args: argparse.Namespace) -> int:
    """Run one data action."""
    cfg = compose(args.overrides)
    if args.action == "prepare":
        from harness.data.loader import prepare

        for path in prepare(cfg, force=args.force):
            print(path)
        return 0
    if args.action == "describe":
        from harness.data.loader import describe

        print(describe(cfg))
        return 0
    from harness.data import dvc

    if args.action == "push":
        result = dvc.push(cfg)
    else:
        result = dvc.pull(cfg)
    if result is not None:
        print(result)
    return 0
