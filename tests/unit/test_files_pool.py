"""Pool builder, manifest, URL/path rules, nginx config rendering: fast, no servers."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.files import nginx
from harness.files.app import PoolApp
from harness.files.pool import (
    MANIFEST,
    PoolSpec,
    build_pool,
    parse_manifest,
    plan_pool,
    scan_pool,
    write_manifest,
)
from harness.files.verify import _unsafe
from harness.testing.fixtures_files import make_attack_pool
from harness.urls import base_url


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_pool_is_deterministic_and_seed_dependent(tmp_path: Path) -> None:
    a = build_pool(tmp_path / "a", PoolSpec(count=40, seed=3))
    b = build_pool(tmp_path / "b", PoolSpec(count=40, seed=3))
    c = build_pool(tmp_path / "c", PoolSpec(count=40, seed=4))
    assert _tree(a) == _tree(b)
    assert _tree(a) != _tree(c)


def test_pool_shape_sizes_nesting_utf8(tmp_path: Path) -> None:
    spec = PoolSpec(count=300, seed=0, min_size=4, max_size=65536, fanout=(8, 4))
    root = build_pool(tmp_path / "p", spec)
    files = [p for p in root.rglob("*.txt")]
    assert len(files) == 300
    sizes = [p.stat().st_size for p in files]
    assert min(sizes) >= 4 and max(sizes) <= 65536
    # Log-uniform: both tiny files and ones near the top of the range.
    assert min(sizes) < 64 and max(sizes) > 16384
    depths = {len(p.relative_to(root).parts) for p in files}
    assert depths == {2, 3}  # 1 or 2 folder levels, then the file
    text = "".join(p.read_text(encoding="utf-8") for p in files)  # strict decoding
    assert any(ord(ch) > 127 for ch in text)


def test_manifest_matches_coreutils_sha256sum(tmp_path: Path) -> None:
    root = build_pool(tmp_path / "p", PoolSpec(count=50))
    entries = parse_manifest((root / MANIFEST).read_text())
    assert [rel for _, rel in entries] == sorted(rel for _, rel in entries)
    assert len(entries) == 50
    for digest, rel in entries:  # independent oracle: hashlib on the files on disk
        assert hashlib.sha256((root / rel).read_bytes()).hexdigest() == digest
    if shutil.which("sha256sum") is None:
        pytest.skip("coreutils sha256sum not installed")
    r = subprocess.run(["sha256sum", "-c", "--strict", MANIFEST], cwd=root, capture_output=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_build_refuses_non_empty_folder_and_leaves_it_alone(tmp_path: Path) -> None:
    target = tmp_path / "busy"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(HarnessError, match="not an empty folder"):
        build_pool(target, PoolSpec(count=5))
    assert _tree(target) == {"keep.txt": b"mine"}
    with pytest.raises(HarnessError, match="count"):
        build_pool(tmp_path / "new", PoolSpec(count=0))
    assert not (tmp_path / "new").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["busy"]  # no temp folders left behind


def test_manifest_only_mode_skips_hidden_and_symlinks(tmp_path: Path) -> None:
    pool = make_attack_pool(tmp_path, count=10)
    (pool.root / MANIFEST).unlink()
    n, skipped = write_manifest(pool.root)
    listed = [rel for _, rel in parse_manifest((pool.root / MANIFEST).read_text())]
    assert n == 10 == len(listed)
    assert all(rel.endswith(".txt") and "/." not in rel and "link" not in rel for rel in listed)
    joined = " ".join(skipped)
    for name in (".hidden.txt", ".git/config", "d0-00/.env", "link-out.txt", "link-in.txt"):
        assert name in joined
    assert "dirlink (symlink)" in joined
    r = subprocess.run(["sha256sum", "-c", "--quiet", MANIFEST], cwd=pool.root)
    assert r.returncode == 0


def test_manifest_only_mode_bad_input(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="not a folder"):
        write_manifest(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(HarnessError, match="no servable files"):
        write_manifest(tmp_path / "empty")
    assert scan_pool(tmp_path / "empty") == ([], [])


def test_parse_manifest_formats_and_errors() -> None:
    d = "ab" * 32
    assert parse_manifest(f"{d}  a/b.txt\n{d.upper()} *c d.txt\n\n") == [
        (d, "a/b.txt"),
        (d, "c d.txt"),
    ]
    for bad in ("nothex  x", f"{d[:-1]}  x", f"{d}", "zz" * 32 + "  x"):
        with pytest.raises(HarnessError, match="line 1"):
            parse_manifest(bad)


def test_base_url_and_unsafe_manifest_paths() -> None:
    assert base_url("http://h:1/") == "http://h:1"
    assert base_url("http://h:1/pool/SHA256SUMS", MANIFEST) == "http://h:1/pool"
    assert base_url(" h:1/pool/?x=1#y ") == "http://h:1/pool"  # as users type it
    assert base_url("https://h/SHA256SUMS") == "https://h/SHA256SUMS"  # only the named file
    for bad in ("ftp://h/x", "http://", "", "nonsense", "h:port", "http://h:99999"):
        with pytest.raises(HarnessError, match="not an http"):
            base_url(bad)
    for rel in ("../x", "/etc/passwd", "a/../../b", "a\\b", "a//b", "./a"):
        assert _unsafe(rel), rel
    assert not _unsafe("d0-01/item-1.txt")


def test_python_app_resolves_only_plain_files_inside(tmp_path: Path) -> None:
    pool = make_attack_pool(tmp_path, count=5)
    app = PoolApp(pool.root)
    first = sorted(p.relative_to(pool.root).as_posix() for p in pool.root.rglob("item-*"))[0]
    assert app.resolve("/" + first) is not None
    assert app.resolve("/" + MANIFEST) is not None
    refused = [
        "/",
        "/d0-00",
        "/d0-00/",
        "/../outside/secret.txt",
        "/d0-00/../../outside/secret.txt",
        "//etc/passwd",
        "/" + str(pool.outside / "secret.txt"),
        "/link-out.txt",
        "/link-in.txt",
        "/dirlink/secret.txt",
        "/.hidden.txt",
        "/.git/config",
        "/d0-00/.env",
        "/d0-00\\..\\..\\outside\\secret.txt",
        "/a\x00b",
        "relative.txt",
    ]
    for path in refused:
        assert app.resolve(path) is None, path


def test_nginx_config_renders_security_rules(tmp_path: Path, files_cfg) -> None:
    root = build_pool(tmp_path / "p", PoolSpec(count=3))
    ncfg = files_cfg.files.server.nginx
    text = nginx.render(root, "127.0.0.1:18080", tmp_path / "run", ncfg)
    for needle in (
        "daemon off;",
        "listen 127.0.0.1:18080",
        f'root "{root.resolve()}";',
        "autoindex off;",
        "disable_symlinks on;",
        "limit_except GET",
        "return 405;",
        f"max_ranges {ncfg.max_ranges};",
        f'pid "{tmp_path / "run" / "nginx.pid"}";',
    ):
        assert needle in text, needle
    assert "{{" not in text
    with pytest.raises(HarnessError, match="characters"):
        nginx.render(tmp_path / 'bad";x', "127.0.0.1:1", tmp_path / "run", ncfg)
    binary = nginx.nginx_binary(ncfg.binary)
    if binary is None:
        pytest.skip("nginx not installed: syntax check skipped")
    nginx.prepare_runtime(tmp_path / "run")
    conf = tmp_path / "run" / "nginx.conf"
    conf.write_text(text)
    r = subprocess.run(
        [binary, "-t", "-c", str(conf), "-p", str(tmp_path / "run"), "-e", str(tmp_path / "e.log")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr


def test_cli_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    cases = [
        (["files", "build", str(busy), "--count", "3"], "not an empty folder"),
        (["files", "build", str(tmp_path / "n"), "--count", "0"], "--count must be at least 1"),
        (["files", "build", str(tmp_path / "missing")], "give --count"),
        (["files", "verify", "nonsense"], "not an http"),
        (["files", "verify", "http://127.0.0.1:1/", "--jobs", "0"], "--jobs must be"),
    ]
    for argv, msg in cases:
        assert main(argv) != 0
        err = capsys.readouterr().err.strip()
        assert msg in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "n").exists()


def test_cli_build_then_manifest_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    root = tmp_path / "pool"
    assert main(["files", "build", str(root), "--count", "7", "files.pool.seed=5"]) == 0
    first = (root / MANIFEST).read_text()
    assert len(parse_manifest(first)) == 7
    (root / MANIFEST).unlink()
    assert main(["files", "build", str(root)]) == 0
    assert (root / MANIFEST).read_text() == first
    assert os.stat(root / MANIFEST).st_mode & 0o444 == 0o444
    assert plan_pool(PoolSpec(count=7, seed=5))[0][1] in [
        p.read_bytes() for p in root.rglob("*") if p.is_file()
    ]


def test_choose_impl_falls_back_without_nginx() -> None:
    from harness.services.fileserver import choose_impl

    assert choose_impl("auto", "no-such-nginx-binary") == "python"
    assert choose_impl("python", "no-such-nginx-binary") == "python"
    with pytest.raises(HarnessError, match="nginx is not installed"):
        choose_impl("nginx", "no-such-nginx-binary")
    with pytest.raises(HarnessError, match="unknown file server"):
        choose_impl("apache")
