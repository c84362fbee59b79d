"""`harness verify inference|embeddings|files|s3`: check a deployment someone else built.

Each action runs the matching conformance module (harness/conformance/test_<kind>.py) through
pytest, prints one line per check (a failed check names what differs), optionally writes a
Markdown report, and exits 0 only when every check passed. `pytest --pyargs harness.conformance`
with the same values as `--verify-*` options runs the very same checks.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from harness.errors import HarnessError

EPILOG = (
    "Exit status: 0 every check passed; 1 a check failed; 2 bad usage or an unreachable target. "
    "The same checks run from pytest: pytest --pyargs harness.conformance --verify-url=... "
    "(see README, 'Verify your own deployment')."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the verify actions."""
    from harness.commands.args import IntermixedParser

    sub = parser.add_subparsers(
        dest="action", metavar="<kind>", required=True, parser_class=IntermixedParser
    )
    for name, (summary, description, add_own) in KINDS.items():
        kind = sub.add_parser(name, help=summary, description=description, epilog=EPILOG)
        add_own(kind)
        _common(kind)


def _inference_arguments(i: argparse.ArgumentParser) -> None:
    i.add_argument("--url", help="server HTTP URL: http://host:port or host:port")
    i.add_argument("--model", help="served model name")
    ref = i.add_mutually_exclusive_group()
    ref.add_argument("--onnx", help="reference ONNX file (oracle: onnxruntime in-process)")
    ref.add_argument("--golden", help="golden .npz: inputs/<name> and outputs/<name> arrays")
    i.add_argument("--grpc-url", help="the server's gRPC address (host:port) for the gRPC checks")
    i.add_argument(
        "--protocol",
        choices=["http", "grpc"],
        default="http",
        help="protocol of the main checks (default http)",
    )
    i.add_argument(
        "--config", help="the model's config.pbtxt (max_batch_size, batching, instances)"
    )
    i.add_argument("--concurrency", type=int, help="requests in flight in the load check")
    i.add_argument("--duration", type=float, help="seconds of load in the load check")
    i.add_argument("--p99-ms", type=float, help="latency budget: p99 in ms at --concurrency")
    i.add_argument("--min-throughput", type=float, help="throughput budget in inferences/s")
    i.add_argument("--atol", type=float, help="absolute tolerance (default: from the datatype)")
    i.add_argument("--rtol", type=float, help="relative tolerance (default: from the datatype)")
    i.add_argument("--targets", help="YAML file of targets: verify many models in one run")


def _embeddings_arguments(e: argparse.ArgumentParser) -> None:
    e.add_argument("--url", required=True, help="server HTTP URL")
    e.add_argument("--model", required=True, help="served model name (text in, embedding out)")
    e.add_argument(
        "--precision",
        choices=["fp32", "fp16", "int8"],
        default="fp32",
        help="which drift thresholds apply (default fp32)",
    )
    e.add_argument("--sentences", help="text file, one sentence a line (default: committed set)")


def _files_arguments(f: argparse.ArgumentParser) -> None:
    f.add_argument("--url", required=True, help="file server base URL")
    f.add_argument("--manifest", help="manifest path or URL (default: <url>/SHA256SUMS)")
    f.add_argument("--pool", help="the served folder when local: adds the planted-symlink probe")


def _s3_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("--endpoint", required=True, help="S3 endpoint URL")
    s.add_argument("--bucket", required=True, help="bucket to verify (must exist)")
    s.add_argument("--prefix", help="key prefix for the objects the checks write")


# kind -> (one-line help, description, the kind's own arguments); _common adds the shared ones.
KINDS: dict[str, tuple[str, str, Callable[[argparse.ArgumentParser], None]]] = {
    "inference": (
        "one model on any Open Inference Protocol server (Triton, MLServer, KServe, ...)",
        "Check one served model against its reference: metadata, outputs, batch "
        "invariance, isolation under concurrency, bad requests, wire formats, latency.",
        _inference_arguments,
    ),
    "embeddings": (
        "a served text -> embedding model against sentence-transformers",
        "Check a served sentence-embedding model (text in, vector out) against the "
        "sentence-transformers oracle with the project's drift thresholds for its precision.",
        _embeddings_arguments,
    ),
    "files": (
        "any HTTP file server: every hash of the manifest, plus security probes",
        "Download every file of the manifest and check its sha256, then probe the "
        "server: traversal, hidden files, listings, methods, Range abuse, oversized headers.",
        _files_arguments,
    ),
    "s3": (
        "any S3 endpoint: integrity, checkpoint resume under a cut, auth refusals, MB/s",
        "Round trips below and above the multipart threshold, a checkpoint upload cut "
        "mid-way, refusal of wrong and missing credentials, put/get throughput. Credentials come "
        "from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and are never printed.",
        _s3_arguments,
    ),
}


def _common(p: argparse.ArgumentParser) -> None:
    from harness.commands.args import add_overrides

    add_overrides(p)
    p.add_argument("--report", help="also write a Markdown report to this file")
    p.add_argument("-k", dest="select", help="run only the checks matching this pytest -k text")
    p.add_argument("--junitxml", help="also write JUnit XML (as pytest --junitxml)")
    p.add_argument(
        "--jobs",
        type=int,
        help="run checks in N parallel processes (pytest-xdist; with --targets, per target)",
    )


def _inference_options(args: argparse.Namespace) -> tuple[dict, str]:
    if not args.targets:
        missing = [n for n in ("url", "model") if not getattr(args, n)]
        if missing:
            raise HarnessError(f"verify inference needs --{' and --'.join(missing)} (or --targets)")
        if not (args.onnx or args.golden):
            raise HarnessError("verify inference needs a reference: --onnx FILE or --golden FILE")
    opts = {
        "verify-url": args.url,
        "verify-grpc-url": args.grpc_url,
        "verify-model": args.model,
        "verify-onnx": args.onnx,
        "verify-golden": args.golden,
        "verify-protocol": args.protocol,
        "verify-config": args.config,
        "verify-concurrency": args.concurrency,
        "verify-duration-s": args.duration,
        "verify-p99-ms": args.p99_ms,
        "verify-min-throughput": args.min_throughput,
        "verify-atol": args.atol,
        "verify-rtol": args.rtol,
        "verify-targets": args.targets,
    }
    return opts, args.targets or f"{args.url} model {args.model}"


def _options(args: argparse.Namespace) -> tuple[dict, str]:
    if args.action == "inference":
        return _inference_options(args)
    if args.action == "embeddings":
        return {
            "verify-embeddings-url": args.url,
            "verify-embeddings-model": args.model,
            "verify-embeddings-precision": args.precision,
            "verify-sentences": args.sentences,
        }, f"{args.url} model {args.model}"
    if args.action == "files":
        return {
            "verify-files-url": args.url,
            "verify-manifest": args.manifest,
            "verify-pool": args.pool,
        }, args.url
    return {
        "verify-s3-endpoint": args.endpoint,
        "verify-s3-bucket": args.bucket,
        "verify-s3-prefix": args.prefix,
    }, f"{args.endpoint} bucket {args.bucket}"


def run(args: argparse.Namespace) -> int:
    """Run the chosen checks; print one line per check; exit 1 when any failed."""
    import shlex

    from harness.config import compose
    from harness.verify import preflight
    from harness.verify.report import write
    from harness.verify.runner import print_summary, run_checks

    options, target = _options(args)
    compose(args.overrides)  # a bad override is one line before anything runs
    options["verify-overrides"] = " ".join(shlex.quote(o) for o in args.overrides) or None
    preflight.check(args.action, options)  # unreachable target: one line, exit 2
    extra = [f"--junitxml={args.junitxml}"] if args.junitxml else []
    if args.jobs and args.jobs > 1:
        # a target's checks stay together, in order, on one worker (xdist_group, see plugin)
        extra += ["-n", str(args.jobs), "--dist", "loadgroup"]
    result = run_checks(args.action, options, target=target, select=args.select, extra_args=extra)
    print_summary(result)
    if args.report:
        print(f"report: {write(result, args.report)}")
    if not result.checks:
        print("harness: error: no check ran (does -k match any?)", file=sys.stderr)
        return 2
    return 0 if result.ok else 1
