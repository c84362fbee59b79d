"""Demo: build a pool, serve it (nginx, else the Python fallback), verify every hash, stop."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from harness.errors import HarnessError
from harness.files.pool import PoolSpec, build_pool
from harness.files.verify import verify
from harness.paths import resolve
from harness.services.fileserver import LocalFileServer


def run_demo(cfg) -> list[str]:
    """Run the file-server step end to end on cfg.files; return summary lines."""
    fc = cfg.files
    work = resolve(cfg.paths.work_dir) / "files"
    work.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="demo-", dir=work))
    try:
        spec = PoolSpec(
            count=int(fc.demo.count),
            seed=int(fc.pool.seed),
            min_size=int(fc.pool.min_size),
            max_size=int(fc.pool.max_size),
            fanout=tuple(fc.pool.fanout),
        )
        root = build_pool(base / "pool", spec)
        with LocalFileServer(root, fc.server) as srv:
            report = verify(
                srv.url,
                progress=False,
                jobs=int(fc.verify.jobs),
                retries=int(fc.verify.retries),
                backoff=float(fc.verify.backoff),
                timeout=float(fc.verify.timeout),
                chunk_size=int(fc.verify.chunk_size),
            )
            impl, url = srv.impl, srv.url
        if not report.ok:
            raise HarnessError(f"verify failed: {report.summary()}")
        return [
            f"{report.total} files served by {impl} at {url}, all sha256 match",
            report.summary(),
        ]
    finally:
        shutil.rmtree(base, ignore_errors=True)
