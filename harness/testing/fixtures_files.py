"""Session fixtures for the file server: a pool with attack material beside it, and servers.

`files_pool` is a generated pool plus things that must never be served: a hidden file, a hidden
folder, symlinks to a secret outside the pool (file and folder) and one to a file inside it.
`pool_server` runs once per implementation (nginx, python); `file_server` follows --backend and
is built from `files_backend`, `files_url`, `files_cfg` and `files_pool`, each of which a
conftest.py may override.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.services.base import running
from harness.testing.plugin import backend_fixtures, require_backend

SECRET = "TOP-SECRET-OUTSIDE-THE-POOL-7f3a"


@dataclass
class Pool:
    """A generated pool and where its forbidden neighbours are."""

    root: Path
    outside: Path
    count: int


@pytest.fixture(scope="session")
def files_cfg(tmp_path_factory: pytest.TempPathFactory):
    """The composed config (files group) with runtime files in a temp folder."""
    from harness.config import compose

    work = tmp_path_factory.mktemp("files-work")
    return compose([f"paths.work_dir={work}"])


def make_attack_pool(base: Path, count: int, seed: int = 0) -> Pool:
    """Build a pool under base/pool and plant the never-serve material around it."""
    from harness.files.pool import PoolSpec, build_pool

    root = build_pool(base / "pool", PoolSpec(count=count, seed=seed))
    outside = base / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET + "\n")
    (root / ".hidden.txt").write_text(SECRET + " hidden\n")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text(SECRET + " git\n")
    (root / "d0-00").mkdir(exist_ok=True)
    (root / "d0-00" / ".env").write_text(SECRET + " env\n")
    os.symlink(outside / "secret.txt", root / "link-out.txt")
    os.symlink("../outside", root / "dirlink")
    first = next(p for p in sorted(root.rglob("item-*.txt")))
    os.symlink(first, root / "link-in.txt")
    return Pool(root, outside, count)


@pytest.fixture(scope="session")
def files_pool(tmp_path_factory: pytest.TempPathFactory, files_cfg) -> Pool:
    """A generated pool (files.pool.count files) with attack material planted around it."""
    return make_attack_pool(tmp_path_factory.mktemp("files"), int(files_cfg.files.pool.count))


@pytest.fixture(scope="session", params=["nginx", "python"])
def pool_server(request: pytest.FixtureRequest, files_pool: Pool, files_cfg) -> Iterator:
    """The pool served locally by nginx, then by the Python fallback (same tests for both)."""
    from harness.files.nginx import nginx_binary
    from harness.services.fileserver import LocalFileServer

    impl = request.param
    if impl == "nginx" and nginx_binary(files_cfg.files.server.nginx.binary) is None:
        pytest.skip("nginx is not installed (Debian: apt-get install nginx-light)")
    server = LocalFileServer(files_pool.root, files_cfg.files.server, impl=impl)
    with running(server):
        yield server


files_backend, files_url = backend_fixtures("files", "files-url", "the file server")


@pytest.fixture(scope="session")
def file_server(files_backend: str, files_url: str | None, files_pool: Pool, files_cfg) -> Iterator:
    """The FileServer from `files_backend` (local: nginx if installed, else python)."""
    from harness.services.fileserver import file_server as make

    require_backend(files_backend)
    with running(make(files_backend, files_pool.root, files_cfg.files.server, url=files_url)) as s:
        yield s
