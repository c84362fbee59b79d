"""Entry point: `harness <command> [options] [hydra.overrides ...]`.

Commands are registered by name with the module that implements them, so `harness --help` stays
fast and only the chosen command's module (torch, tritonclient, ...) is imported. Each module
defines `add_arguments(parser)` and `run(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Sequence

from harness.commands.args import IntermixedParser
from harness.errors import HarnessError

# name -> (module, one-line summary)
COMMANDS: dict[str, tuple[str, str]] = {
    "data": (
        "harness.commands.data",
        "prepare/describe the digits data set; push/pull it with DVC",
    ),
    "train": ("harness.commands.train", "train the digit classifier (MLflow logging, checkpoints)"),
    "infer": ("harness.commands.infer", "predict the test split: predictions.csv + metrics"),
    "export": ("harness.commands.export", "export the trained classifier to ONNX (parity-checked)"),
    "run-server": ("harness.commands.run_server", "serve the logged ONNX model with mlflow models"),
    "serve": ("harness.commands.serve", "run Triton with the model repository until Ctrl-C"),
    "client": ("harness.commands.client", "send images to Triton; print accuracy and latency"),
    "tune": ("harness.commands.tune", "sweep Triton batching/instances with perf_analyzer"),
    "checkpoints": ("harness.commands.checkpoints", "list/show/delete checkpoints in S3"),
    "convert": ("harness.commands.convert", "convert MiniLM to ONNX/OpenVINO/fp16/int8/TensorRT"),
    "embed": ("harness.commands.embed", "compare sentence embeddings across served formats"),
    "files": ("harness.commands.files", "build/serve/verify a pool of text files over HTTP"),
    "roofline": ("harness.commands.roofline", "per-layer roofline analysis and report"),
    "stack": ("harness.commands.stack", "docker compose stack: up/down/status"),
    "tools": ("harness.commands.tools", "install/locate external tools (perf_analyzer)"),
    "verify": (
        "harness.commands.verify",
        "verify a deployment you did not build: inference, embeddings, files, s3",
    ),
    "demo": ("harness.commands.demo", "run the whole pipeline end to end on embedded defaults"),
}


def build_parser(argv: Sequence[str]) -> tuple[argparse.ArgumentParser, dict[str, object]]:
    """Build the top-level parser; only the selected command's module is imported."""
    parser = argparse.ArgumentParser(
        prog="harness",
        description="mlops-harness: train, export, serve and verify a small MLOps stack.",
        epilog="Run `harness <command> --help` for a command's options. "
        "Set HARNESS_TRACEBACK=1 to see full tracebacks.",
    )
    # Intermixed: `harness data prepare --force data.dir=X` (overrides after an option) works.
    sub = parser.add_subparsers(dest="command", metavar="<command>", parser_class=IntermixedParser)
    modules: dict[str, object] = {}
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, summary) in COMMANDS.items():
        p = sub.add_parser(name, help=summary, description=summary)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(p)
            modules[name] = module
    return parser, modules


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; user errors become one line on stderr and a non-zero exit."""
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    show_tb = os.environ.get("HARNESS_TRACEBACK") == "1"
    try:
        parser, modules = build_parser(argv)
        args = parser.parse_args(argv)
        if not args.command:
            parser.print_help()
            return 2
        return int(modules[args.command].run(args) or 0)
    except HarnessError as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        if exc.detail and show_tb:
            print(exc.detail, file=sys.stderr)
        if show_tb:  # the traceback as well, and still the error's own exit code
            traceback.print_exc()
        return exc.exit_code
    except KeyboardInterrupt:
        print("harness: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # last resort: one line, not a traceback wall
        if show_tb:
            traceback.print_exc()
            return 1
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"harness: error: {type(exc).__name__}: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
