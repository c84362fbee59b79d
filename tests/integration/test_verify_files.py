"""`harness verify files` as a user runs it, against servers that must pass and servers that must
fail exactly the checks that match what they do wrong."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from harness.files.pool import MANIFEST, PoolSpec, build_pool, parse_manifest
from harness.services import free_port, running
from harness.services.fileserver import LocalFileServer
from harness.testing.fixtures_files import make_attack_pool
from tests.integration._cli import conformance_pytest, harness
from tests.integration._files_servers import CarelessNginx, NaiveServer, python_http_server

pytestmark = pytest.mark.integration

CHECKS = {
    "hashes",
    "traversal",
    "absolute_paths",
    "hidden_files",
    "directory_listing",
    "methods",
    "range_abuse",
    "oversized_headers",
    "symlink_escape",
}
_LINE = re.compile(r"^  (PASS|FAIL|SKIP) (\w+)(?:: (.*))?$")


def outcomes(stdout: str) -> dict[str, tuple[str, str]]:
    """check name -> (PASS|FAIL|SKIP, message) from the command's per-check lines."""
    found = {}
    for line in stdout.splitlines():
        m = _LINE.match(line)
        if m:
            found[m.group(2)] = (m.group(1), m.group(3) or "")
    return found


def verify(url: str, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    """Run `harness verify files --url URL EXTRA`; every check must have reported."""
    r = harness("verify", "files", "--url", url, *extra)
    got = outcomes(r.stdout)
    assert set(got) == CHECKS, r.stdout + r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    return r, got


def failed(got: dict) -> set[str]:
    """Names of the failed checks."""
    return {name for name, (mark, _) in got.items() if mark == "FAIL"}


def _need_nginx(files_cfg) -> None:
    from harness.files.nginx import nginx_binary

    if nginx_binary(files_cfg.files.server.nginx.binary) is None:
        pytest.skip("nginx is not installed (Debian: apt-get install nginx-light)")


@pytest.fixture(scope="module")
def clean_pool(tmp_path_factory: pytest.TempPathFactory, files_cfg) -> Path:
    """A generated pool with nothing planted around it (a user's pool)."""
    count = int(files_cfg.files.pool.count)
    return build_pool(tmp_path_factory.mktemp("verify-files") / "pool", PoolSpec(count=count))


@pytest.mark.parametrize("impl", ["nginx", "python"])
def test_project_servers_pass_every_check(impl, clean_pool, files_cfg, tmp_path: Path) -> None:
    if impl == "nginx":
        _need_nginx(files_cfg)
    report = tmp_path / "verify.md"
    with LocalFileServer(clean_pool, files_cfg.files.server, impl=impl) as srv:
        r, got = verify(srv.url, "--pool", str(clean_pool), "--report", str(report))
    assert failed(got) == set() and r.returncode == 0, r.stdout + r.stderr
    text = report.read_text()
    assert "**PASS**: 9 passed, 0 failed" in text and "| symlink_escape | pass |" in text
    assert "| files/s |" in text and f"| files | {files_cfg.files.pool.count} |" in text
    # The planted symlinks and the control file are gone again.
    assert not list(clean_pool.glob("harness-verify-*"))


def test_without_pool_the_symlink_check_skips(clean_pool, files_cfg) -> None:
    with LocalFileServer(clean_pool, files_cfg.files.server) as srv:
        r, got = verify(srv.url + "/")
    assert r.returncode == 0, r.stdout + r.stderr
    assert got["symlink_escape"][0] == "SKIP" and "--pool" in got["symlink_escape"][1]
    assert failed(got) == set()


def test_python_http_server_fails_listing_and_symlinks(clean_pool, tmp_path: Path) -> None:
    with running(python_http_server(clean_pool, tmp_path)) as srv:
        r, got = verify(srv.url, "--pool", str(clean_pool))
    assert r.returncode == 1
    assert failed(got) == {"directory_listing", "symlink_escape"}, r.stdout
    assert "GET / lists" in got["directory_listing"][1]
    assert "file link" in got["symlink_escape"][1] and "folder link" in got["symlink_escape"][1]
    assert not list(clean_pool.glob("harness-verify-*"))


def test_careless_nginx_fails_listing_hidden_and_symlinks(tmp_path: Path, files_cfg) -> None:
    _need_nginx(files_cfg)
    pool = make_attack_pool(tmp_path, count=120, seed=4)
    with CarelessNginx(pool.root, files_cfg.files.server) as srv:
        r, got = verify(srv.url, "--pool", str(pool.root))
    assert r.returncode == 1
    assert failed(got) == {"directory_listing", "hidden_files", "symlink_escape"}, r.stdout
    assert "/.git/config served" in got["hidden_files"][1]


def test_one_changed_file_fails_the_hash_check_by_name(tmp_path: Path, files_cfg) -> None:
    _need_nginx(files_cfg)
    root = build_pool(tmp_path / "pool", PoolSpec(count=60, seed=11))
    rel = parse_manifest((root / MANIFEST).read_text())[23][1]
    data = bytearray((root / rel).read_bytes())
    data[0] ^= 1  # same length, one bit: only the hash can tell
    (root / rel).write_bytes(bytes(data))
    with LocalFileServer(root, files_cfg.files.server, impl="nginx") as srv:
        r, got = verify(srv.url, "--pool", str(root))
    assert r.returncode == 1
    assert failed(got) == {"hashes"}, r.stdout
    assert got["hashes"][1] == f"1 of 60 files bad (1 mismatch, 0 missing, 0 error): mismatch {rel}"


def test_manifest_from_a_file_and_from_another_url(clean_pool, files_cfg, tmp_path) -> None:
    # Part of the pool, listed elsewhere: exactly those files are checked.
    lines = (clean_pool / MANIFEST).read_text().splitlines()[:10]
    manifest = tmp_path / "subset.sha256"
    manifest.write_text("\n".join(lines) + "\n")
    report = tmp_path / "r.md"
    with LocalFileServer(clean_pool, files_cfg.files.server) as srv:
        for source, count in (
            (str(manifest), 10),
            (f"{srv.url}/{MANIFEST}", len(_entries(clean_pool))),
        ):
            r = harness(
                "verify",
                "files",
                "--url",
                srv.url,
                "--manifest",
                source,
                "-k",
                "hashes",
                "--report",
                str(report),
            )
            assert r.returncode == 0 and outcomes(r.stdout) == {"hashes": ("PASS", "")}, r.stdout
            assert f"| files | {count} |" in report.read_text()


def _entries(root: Path) -> list[tuple[str, str]]:
    return parse_manifest((root / MANIFEST).read_text())


def _one_line_error(r: subprocess.CompletedProcess, *words: str) -> None:
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("harness: error: "), r.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_bad_input_is_one_line(clean_pool, tmp_path: Path) -> None:
    port = free_port()
    _one_line_error(harness("verify", "files", "--url", f"http://127.0.0.1:{port}"), "cannot reach")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(256)) * 64)
    page = tmp_path / "page.html"
    page.write_text("<!DOCTYPE html>\n<html><body>Index of /</body></html>\n")
    with running(python_http_server(clean_pool, tmp_path)) as srv:
        url = srv.url
        _one_line_error(
            harness("verify", "files", "--url", url, "--manifest", str(junk)),
            "is not a sha256sum manifest (binary data",
        )
        _one_line_error(
            harness("verify", "files", "--url", url, "--manifest", str(page)),
            "is not a sha256sum manifest: SHA256SUMS line 1",
        )
        # http.server answers its root with an HTML listing.
        _one_line_error(
            harness("verify", "files", "--url", url, "--manifest", f"{url}/"),
            "is not a sha256sum manifest",
        )
        _one_line_error(
            harness("verify", "files", "--url", url, "--manifest", f"{url}/nope.sha256"),
            "HTTP 404",
        )
        _one_line_error(
            harness("verify", "files", "--url", url, "--manifest", str(tmp_path / "absent")),
            "does not exist",
        )


def test_pytest_pyargs_runs_the_same_checks(clean_pool, files_cfg, tmp_path: Path) -> None:
    """A user's CI: plain pytest from their own folder, the plugin gives the options."""
    junit = tmp_path / "junit.xml"
    with LocalFileServer(clean_pool, files_cfg.files.server) as srv:
        r = conformance_pytest(
            f"--verify-files-url={srv.url}",
            f"--verify-pool={clean_pool}",
            f"--junitxml={junit}",
            cwd=tmp_path,
        )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    xml = junit.read_text()
    for name in CHECKS:
        assert f'name="test_{name}"' in xml
    assert re.search(r'classname="[^"]*test_files" name="test_hashes" time="[^"]+" */>', xml) or (
        "test_hashes" in xml and "<failure" not in xml
    )


def test_a_naive_server_fails_every_probe(tmp_path: Path) -> None:
    """Each probe catches its own mistake (none of the servers above makes these)."""
    pool = make_attack_pool(tmp_path, count=40, seed=5)
    with NaiveServer(pool.root) as srv:
        r, got = verify(srv.url, "--pool", str(pool.root))
    assert r.returncode == 1
    assert failed(got) == CHECKS - {"hashes"}, r.stdout
    assert got["traversal"][1].startswith("/etc/passwd served through 5 of 13 forms: ../, ")
    assert (
        "accepted: PUT /harness-verify-" in got["methods"][1]
        and "TRACE / echoes" in got["methods"][1]
    )
    assert "overlapping: 206 of" in got["range_abuse"][1]
    assert not list(pool.root.glob("harness-verify-*"))
