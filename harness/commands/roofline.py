"""`harness roofline`: per-layer roofline analysis of the served models and its report."""

from __future__ import annotations

import argparse
import shlex

from harness.commands.args import add_overrides
from harness.config import compose

EPILOG = """\
Settings are Hydra overrides of the `roofline` config group (configs/roofline/default.yaml):
  roofline.model=cnn|minilm|all          which model(s) to analyse (default: all)
  'roofline.batch_sizes=[1,8,64]'        batch sizes (quote the brackets in a shell)
  roofline.dtype=fp32|fp16               bytes per weight/activation element
  'roofline.devices=[cpu,h100_sxm,h200]' this CPU (measured) and GPUs from roofline.gpus
  roofline.validate.enabled=false        skip the PyTorch/onnxruntime timing on this CPU
  roofline.output.report=PATH.md         report path (PNG/CSV/JSON are written next to it)
The CNN's shape comes from the model group (e.g. model.channels=32).
Short forms model=, batch_sizes=, dtype= and devices= are aliases of the roofline.* keys
(`harness roofline model=minilm dtype=fp16` = `... roofline.model=minilm roofline.dtype=fp16`).
Example: harness roofline roofline.model=cnn 'roofline.batch_sizes=[1,16,256]' roofline.dtype=fp16
"""

# Short forms from the synopsis -> the roofline group's keys. `model=cnn` would otherwise
# select the (default) CNN config of the `model` group and silently analyse every model.
ALIASES = ("model", "batch_sizes", "dtype", "devices")


def expand_aliases(overrides: list[str]) -> list[str]:
    """Rewrite `model=...`, `batch_sizes=...`, `dtype=...`, `devices=...` to `roofline.<key>`."""
    out = []
    for o in overrides:
        key = o.split("=", 1)[0]
        out.append(f"roofline.{o}" if "=" in o and key in ALIASES else o)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the Hydra overrides and explain the roofline keys."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    add_overrides(parser)


def run(args: argparse.Namespace) -> int:
    """Analyse, write reports/roofline.md (+ PNG per model, CSV, JSON) and print the choices."""
    from harness.roofline.runner import run_roofline

    overrides = expand_aliases(list(args.overrides))
    cfg = compose(overrides)
    command = "harness roofline" + "".join(f" {shlex.quote(o)}" for o in overrides)
    result, path = run_roofline(cfg, command)
    for a in result.models:
        for d in result.devices:
            c = a.choices[d.key]
            print(
                f"{a.name} on {d.label}: ridge {d.ridge:.1f} FLOP/B, best batch {c.best}, "
                f"saturates at {c.chosen}"
            )
    print(f"report: {path}")
    return 0
