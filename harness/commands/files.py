"""`harness files build|serve|verify|nginx-config|search`: a pool of text files over HTTP, verified,
and searched by meaning."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness.commands.args import IntermixedParser, add_overrides
from harness.config import compose
from harness.errors import HarnessError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the files sub-actions."""
    sub = parser.add_subparsers(
        dest="action", metavar="<action>", required=True, parser_class=IntermixedParser
    )

    b = sub.add_parser(
        "build", help="create a deterministic pool + SHA256SUMS, or only the manifest"
    )
    b.add_argument("dir", help="pool folder (new or empty with --count; existing without)")
    b.add_argument("--count", type=int, help="files to generate; omit to only write the manifest")
    b.add_argument("--seed", type=int, help="generator seed (default: files.pool.seed)")
    add_overrides(b)

    s = sub.add_parser("serve", help="serve a pool read-only until Ctrl-C (nginx, else Python)")
    s.add_argument("dir", help="pool folder")
    s.add_argument("--host", help="address to bind (default: files.server.host)")
    s.add_argument("--port", type=int, help="port (default: a free one)")
    s.add_argument("--impl", choices=["auto", "nginx", "python"], help="server implementation")
    add_overrides(s)

    v = sub.add_parser("verify", help="download every file of the manifest and check sha256")
    v.add_argument("url", help="pool base URL (or its SHA256SUMS URL)")
    v.add_argument("--jobs", type=int, help="concurrent downloads (default: files.verify.jobs)")
    v.add_argument("--retries", type=int, help="extra attempts per file on transient errors")
    v.add_argument("--report", help="also write the result as JSON to this file")
    v.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    add_overrides(v)

    q = sub.add_parser("search", help="the files of a pool nearest a text (MiniLM + CosineIndex)")
    q.add_argument("query", help="the text to search for")
    q.add_argument("--k", type=int, help="files to print (default: kernels.index.files_search.k)")
    q.add_argument("--pool", help="pool folder (default: files.pool.dir)")
    q.add_argument(
        "--url", help="embed with the model served here (OIP HTTP) instead of in-process"
    )
    q.add_argument("--model", help="name of the served text-in model (with --url)")
    add_overrides(q)

    n = sub.add_parser("nginx-config", help="print the nginx config (local or for a container)")
    n.add_argument("dir", nargs="?", help="pool folder (local config); omit with --container")
    n.add_argument("--container", action="store_true", help="config for the official nginx image")
    n.add_argument("--port", type=int, help="local port (default: 8080)")
    add_overrides(n)


def run(args: argparse.Namespace) -> int:
    """Dispatch to the chosen action."""
    cfg = compose(args.overrides)
    return {
        "build": _build,
        "serve": _serve,
        "verify": _verify,
        "nginx-config": _nginx,
        "search": _search,
    }[args.action](args, cfg)


def _build(args: argparse.Namespace, cfg) -> int:
    from harness.files.pool import MANIFEST, PoolSpec, build_pool, write_manifest

    p = cfg.files.pool
    root = Path(args.dir)
    if args.count is None:
        if not root.is_dir():
            raise HarnessError(f"{root} is not a folder: give --count N to generate a new pool")
        n, skipped = write_manifest(root)
        print(
            f"wrote {root / MANIFEST}: {n} files" + (f", {len(skipped)} skipped" if skipped else "")
        )
        return 0
    spec = PoolSpec(
        count=args.count,
        seed=p.seed if args.seed is None else args.seed,
        min_size=p.min_size,
        max_size=p.max_size,
        fanout=tuple(p.fanout),
    )
    build_pool(root, spec)
    print(f"built {root}: {spec.count} files (seed {spec.seed}) + {MANIFEST}")
    return 0


def _serve(args: argparse.Namespace, cfg) -> int:
    import signal

    from harness.services.fileserver import LocalFileServer

    def interrupt(signum, frame):  # SIGTERM/SIGHUP stop as cleanly as Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGHUP, interrupt)
    server = LocalFileServer(
        args.dir, cfg.files.server, impl=args.impl, host=args.host, port=args.port
    )
    server.start()
    try:
        print(
            f"serving {server.root} with {server.impl} at {server.url}/ (Ctrl-C stops)", flush=True
        )
        code = server.wait()
        raise HarnessError(
            f"the {server.impl} server exited with code {code}; see {server.runtime}"
        )
    except KeyboardInterrupt:
        print("stopping", file=sys.stderr)
        return 0
    finally:
        server.stop()


def _verify(args: argparse.Namespace, cfg) -> int:
    from harness.files.verify import Verifier
    from harness.io import atomic_open

    vc = cfg.files.verify
    v = Verifier(
        args.url,
        jobs=vc.jobs if args.jobs is None else args.jobs,
        retries=vc.retries if args.retries is None else args.retries,
        backoff=vc.backoff,
        timeout=vc.timeout,
        chunk_size=vc.chunk_size,
    )
    try:
        report = v.run(
            progress=False if args.no_progress else None, bar_min_files=vc.progress_min_files
        )
    finally:
        v.close()
    for line in report.problem_lines():
        print(line)
    print(report.summary())
    if args.report:
        with atomic_open(args.report) as fh:
            json.dump(report.to_dict(), fh, indent=2)
    return 0 if report.ok else 1


def _nginx(args: argparse.Namespace, cfg) -> int:
    from harness.files import nginx
    from harness.paths import resolve

    ncfg = cfg.files.server.nginx
    if args.container:
        sys.stdout.write(nginx.render_container(ncfg))
        return 0
    if not args.dir:
        raise HarnessError("give the pool folder, or --container for the image config")
    port = args.port or 8080
    runtime = resolve(cfg.files.server.runtime_dir) / f"nginx-{port}"
    sys.stdout.write(nginx.render(args.dir, f"{cfg.files.server.host}:{port}", runtime, ncfg))
    return 0


def _search(args: argparse.Namespace, cfg) -> int:
    from harness.files.search import search_pool
    from harness.paths import resolve

    sc = cfg.kernels.index.files_search
    root = resolve(args.pool or cfg.files.pool.dir)
    k = sc.k if args.k is None else args.k
    hits, skipped = search_pool(root, args.query, int(k), sc, url=args.url, model=args.model)
    for hit in hits:
        print(f"{hit.score:.4f}  {hit.path}")
    if skipped:
        print(
            f"({len(skipped)} files skipped: {', '.join(skipped[:3])}"
            + (", ..." if len(skipped) > 3 else "")
            + ")",
            file=sys.stderr,
        )
    return 0
