"""`harness serve`: run Triton with the model repository in the foreground until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import threading

from harness.commands.args import add_overrides
from harness.config import compose


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register serve's options."""
    parser.add_argument(
        "--backend",
        choices=["local", "docker", "external"],
        help="local tritonserver (default), the official container, or check an external server",
    )
    parser.add_argument("--repository", help="model repository (default: triton.repository)")
    parser.add_argument("--models", nargs="+", help="serve only these models")
    parser.add_argument("--triton-url", help="external server HTTP URL (external backend)")
    parser.add_argument("--triton-grpc-url", help="external server gRPC URL (external backend)")
    add_overrides(parser)


def run(args: argparse.Namespace) -> int:
    """Start the server, print its URLs, wait for Ctrl-C/SIGTERM, stop cleanly."""
    from harness.services.triton import make_triton

    cfg = compose(args.overrides)
    server = make_triton(
        cfg,
        args.backend,
        args.repository,
        args.models,
        http_url=args.triton_url,
        grpc_url=args.triton_grpc_url,
    )
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        server.start()
        print("\n".join(server.describe()), flush=True)
        if getattr(server, "log_path", None):
            print(f"  log     {server.log_path}", flush=True)
        print("Ctrl-C to stop.", flush=True)
        while not stop.wait(1.0):
            if server.backend == "local" and not server.ready():
                print("triton: the server stopped answering; see its log", flush=True)
                return 1
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        signal.signal(signal.SIGTERM, previous)
    print("triton: stopped", flush=True)
    return 0
