"""Demo: build a pool, serve it (nginx, else the Python fallback), verify every hash, then run
`harness verify files` on it (hashes and security probes), stop."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from harness.errors import HarnessError
from harness.files.pool import PoolSpec, build_pool
from harness.files.verify import verify
from harness.paths import resolve
from harness.services.fileserver import LocalFileServer
from harness.verify.runner import run_checks


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
            if not report.ok:
                raise HarnessError(f"verify failed: {report.summary()}")
            # The same checks a user runs on a server they did not build, with the pool local.
            checks = run_checks(
                "files", {"verify-files-url": srv.url, "verify-pool": str(root)}, target=srv.url
            )
            impl, url = srv.impl, srv.url
        if not checks.ok:
            bad = "; ".join(f"{c.name}: {c.message}" for c in checks.failed)
            raise HarnessError(f"harness verify files failed on the demo server: {bad}")
        n = checks.counts()
        return [
            f"{report.total} files served by {impl} at {url}, all sha256 match",
            report.summary(),
            f"harness verify files: {n['passed']} checks passed, {n['failed']} failed "
            f"({', '.join(c.name for c in checks.checks)}) in {checks.seconds:.1f} s",
        ]
    finally:
        shutil.rmtree(base, ignore_errors=True)
