"""`harness demo`: the whole pipeline end to end on embedded defaults, one step per component."""

from __future__ import annotations

import argparse
import importlib
import time

from harness.commands.args import add_overrides
from harness.config import compose
from harness.errors import HarnessError

# step name -> (module with run_demo(cfg) -> list[str], what it shows)
STEPS: dict[str, tuple[str, str]] = {
    "pipeline": ("harness.training.demo", "data -> train -> infer -> ONNX -> mlflow models serve"),
    "triton": ("harness.serving.demo", "the classifier on Triton, queried by the client"),
    "storage": ("harness.training.resume_demo", "checkpoints to S3, resume once"),
    "kernels": ("harness.kernels.demo", "C++/BLAS cosine similarity vs numpy"),
    "files": ("harness.files.demo", "file pool served over HTTP and verified by hash"),
    "search": ("harness.files.search", "semantic search over a file pool: MiniLM + CosineIndex"),
    "embeddings": ("harness.embeddings.demo", "MiniLM in every CPU format, drift comparison"),
    "roofline": ("harness.roofline.demo", "roofline report for the CNN and MiniLM"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register step selection options."""
    parser.add_argument(
        "--only", default="", help=f"comma-separated steps to run (of: {', '.join(STEPS)})"
    )
    parser.add_argument("--skip", default="", help="comma-separated steps to leave out")
    add_overrides(parser)


def _select(only: str, skip: str) -> list[str]:
    wanted = [s for s in only.split(",") if s] or list(STEPS)
    unwanted = [s for s in skip.split(",") if s]
    unknown = sorted(set(wanted + unwanted) - set(STEPS))
    if unknown:
        raise HarnessError(
            f"unknown demo step(s): {', '.join(unknown)} (known: {', '.join(STEPS)})"
        )
    return [s for s in STEPS if s in wanted and s not in unwanted]


def run(args: argparse.Namespace) -> int:
    """Run the selected steps in order; every step runs, the exit code reports any failure."""
    steps = _select(args.only, args.skip)
    cfg = compose(args.overrides)
    results: list[tuple[str, bool, float, list[str]]] = []
    for name in steps:
        module_name, what = STEPS[name]
        print(f"\n=== demo step '{name}': {what}", flush=True)
        t0 = time.monotonic()
        try:
            lines = importlib.import_module(module_name).run_demo(cfg)
            ok = True
        except HarnessError as exc:
            lines, ok = [f"FAILED: {exc}"], False
        except Exception as exc:  # a broken step must not hide the others' results
            lines, ok = [f"FAILED: {type(exc).__name__}: {exc}".splitlines()[0]], False
        results.append((name, ok, time.monotonic() - t0, list(lines)))
        for line in lines:
            print(f"  {line}", flush=True)
    print("\n=== demo summary")
    for name, ok, seconds, lines in results:
        print(
            f"  {'ok  ' if ok else 'FAIL'} {name:<11} {seconds:6.1f}s  {lines[0] if lines else ''}"
        )
    failed = [name for name, ok, _, _ in results if not ok]
    if failed:
        print(f"demo: {len(failed)} step(s) failed: {', '.join(failed)}")
        return 1
    print(f"demo: all {len(results)} steps passed")
    return 0
