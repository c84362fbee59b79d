"""Argument helpers every command parser shares (the CLI that loads the commands uses them too)."""

from __future__ import annotations

import argparse


class IntermixedParser(argparse.ArgumentParser):
    """Lets Hydra overrides follow options (`build DIR --count 5 files.pool.seed=3`)."""

    _inside = False

    def parse_known_args(self, args=None, namespace=None):  # noqa: D102 (argparse API)
        # argparse cannot intermix a parser that has sub-commands: those parse as usual.
        if self._inside or any(a.nargs == argparse.PARSER for a in self._actions):
            return super().parse_known_args(args, namespace)
        self._inside = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inside = False


def add_overrides(parser: argparse.ArgumentParser) -> None:
    """Add the positional Hydra overrides argument to a command parser."""
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="Hydra overrides of configs/ (e.g. train.epochs=2 model.channels=16)",
    )
