"""Both servers (nginx and the Python fallback) over real sockets: content, HTTP semantics,
security rules, verify end to end, changed files, a server that dies mid-download."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from harness.files.pool import MANIFEST, PoolSpec, build_pool, parse_manifest
from harness.files.verify import ERROR, MISMATCH, OK, Verifier
from harness.paths import ROOT
from harness.services import free_port, http_ok, running, wait_until
from harness.services.fileserver import LocalFileServer
from harness.testing.fixtures_files import SECRET, make_attack_pool
from harness.verify.files import request, settings
from harness.verify.files.probes import WRITE_METHODS, range_cases
from tests.integration._cli import ctrl_c_as_from_a_terminal, harness, lines_until
from tests.integration._counting_proxy import CountingProxy

pytestmark = pytest.mark.integration


def raw(base: str, path: str, method: str = "GET", headers: dict[str, str] | None = None):
    """One request byte for byte (the verify probes' client); (status, headers, body)."""
    r = request(base, path, method, headers, timeout=5)
    return r.status, r.headers, r.body


def _entries(root: Path) -> list[tuple[str, str]]:
    return parse_manifest((root / MANIFEST).read_text())


def test_serves_exact_bytes_with_http_semantics(pool_server, files_pool) -> None:
    base = pool_server.url
    entries = _entries(files_pool.root)
    for digest, rel in entries[:25]:
        status, hdrs, body = raw(base, "/" + rel)
        assert status == 200, rel
        assert hashlib.sha256(body).hexdigest() == digest
        assert int(hdrs["content-length"]) == len(body) == (files_pool.root / rel).stat().st_size
        assert hdrs.get("etag") and hdrs.get("last-modified")
    rel = max(entries, key=lambda e: (files_pool.root / e[1]).stat().st_size)[1]
    data = (files_pool.root / rel).read_bytes()
    status, hdrs, body = raw(base, "/" + rel, "HEAD")
    assert status == 200 and body == b"" and int(hdrs["content-length"]) == len(data)
    etag, lm = hdrs["etag"], hdrs["last-modified"]
    assert raw(base, "/" + rel, headers={"If-None-Match": etag})[0] == 304
    assert raw(base, "/" + rel, headers={"If-Modified-Since": lm})[0] == 304
    status, hdrs, body = raw(base, "/" + rel, headers={"Range": "bytes=10-109"})
    assert status == 206 and body == data[10:110]
    assert hdrs["content-range"] == f"bytes 10-109/{len(data)}"
    status, _, body = raw(base, "/" + rel, headers={"Range": "bytes=-7"})
    assert status == 206 and body == data[-7:]
    # The manifest is the one listing: it names exactly the generated files.
    status, _, body = raw(base, "/" + MANIFEST)
    assert status == 200 and len(parse_manifest(body.decode())) == files_pool.count


ATTACKS = [
    "/../outside/secret.txt",
    "/d0-00/../../outside/secret.txt",
    "/%2e%2e/outside/secret.txt",
    "/%2e%2e%2foutside%2fsecret.txt",
    "/d0-00/%2e%2e%2f%2e%2e%2foutside%2fsecret.txt",
    "/%252e%252e%252foutside%252fsecret.txt",
    "/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/../../../../etc/passwd",
    "//etc/passwd",
    "/%2fetc%2fpasswd",
    "/..\\outside\\secret.txt",
    "/d0-00\\..\\..\\outside\\secret.txt",
    "/%5c..%5coutside%5csecret.txt",
    "/link-out.txt",
    "/link-in.txt",
    "/dirlink/secret.txt",
    "/.hidden.txt",
    "/%2ehidden.txt",
    "/.git/config",
    "/d0-00/.env",
    "/",
    "/d0-00/",
    "/d0-00",
]


def test_nothing_outside_or_hidden_is_served(pool_server, files_pool) -> None:
    # Absolute paths too: the pool's own absolute path and the secret's, as request targets.
    attacks = ATTACKS + ["/" + str(files_pool.outside / "secret.txt"), str(files_pool.outside)]
    for path in attacks:
        status, _, body = raw(pool_server.url, path)
        assert 400 <= status < 500, (path, status)
        assert SECRET.encode() not in body, path
        assert b"root:x:0:0" not in body, path
        assert b"item-0" not in body, f"{path} looks like a listing"
    # Absolute-form request target (a proxy-style URL) must not escape either.
    status, _, body = raw(pool_server.url, "http://localhost/../outside/secret.txt")
    assert SECRET.encode() not in body and (status >= 400 or status == 200 and not body)


def test_only_get_and_head(pool_server, files_pool) -> None:
    rel = _entries(files_pool.root)[0][1]
    # Stricter than the verify probe: a real file, and every method refused with a 4xx.
    for method in (*WRITE_METHODS, "OPTIONS", "TRACE", "PROPFIND"):
        status, _, body = raw(pool_server.url, "/" + rel, method, {"Content-Length": "0"})
        assert 400 <= status < 500, (method, status)
    assert (files_pool.root / rel).exists()


def test_bad_and_huge_ranges_are_refused(pool_server, files_pool) -> None:
    rel = _entries(files_pool.root)[0][1]
    size = (files_pool.root / rel).stat().st_size
    # The verify probe's cases; the project's own servers refuse every one of them with a 4xx.
    for what, value in range_cases(size, settings()["range"]).items():
        status, _, body = raw(pool_server.url, "/" + rel, headers={"Range": value})
        assert 400 <= status < 500, (what, status)


def test_verify_cli_end_to_end(pool_server, files_pool, tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    r = harness("files", "verify", pool_server.url + "/", "--jobs", "4", "--report", str(report))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"OK: {files_pool.count} files, {files_pool.count} ok, 0 mismatch" in r.stdout
    assert '"ok": true' in report.read_text()


@pytest.mark.parametrize("impl", ["nginx", "python"])
def test_changed_and_missing_files_are_reported_exactly(impl, tmp_path: Path, files_cfg) -> None:
    _need(impl, files_cfg)
    root = build_pool(tmp_path / "pool", PoolSpec(count=60, seed=11))
    entries = _entries(root)
    changed, gone, same_size = entries[5][1], entries[17][1], entries[30][1]
    with open(root / changed, "ab") as fh:
        fh.write(b"tampered\n")
    (root / gone).unlink()
    data = bytearray((root / same_size).read_bytes())
    data[0] ^= 1  # same length, one bit: only the hash can tell
    (root / same_size).write_bytes(bytes(data))
    with LocalFileServer(root, files_cfg.files.server, impl=impl) as srv:
        r = harness("files", "verify", srv.url, "--jobs", "4")
    assert r.returncode == 1, r.stdout + r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith(("MISMATCH", "MISSING", "ERROR"))]
    assert sorted(lines) == sorted(
        [
            f"MISMATCH {changed}: " + _after(lines, changed),
            f"MISMATCH {same_size}: " + _after(lines, same_size),
            f"MISSING  {gone}: HTTP 404",
        ]
    )
    assert "FAILED: 60 files, 57 ok, 2 mismatch, 1 missing, 0 errors" in r.stdout


def _after(lines: list[str], rel: str) -> str:
    hit = [ln for ln in lines if f" {rel}: " in ln]
    return hit[0].split(f" {rel}: ", 1)[1] if hit else "<not reported>"


def _need(impl: str, files_cfg) -> None:
    from harness.files.nginx import nginx_binary

    if impl == "nginx" and nginx_binary(files_cfg.files.server.nginx.binary) is None:
        pytest.skip("nginx is not installed")


@pytest.mark.parametrize("impl", ["nginx", "python"])
def test_server_stopped_mid_download_is_a_failure(impl, tmp_path: Path, files_cfg) -> None:
    _need(impl, files_cfg)
    root = build_pool(tmp_path / "pool", PoolSpec(count=300, seed=2))
    srv = LocalFileServer(root, files_cfg.files.server, impl=impl)
    srv.start()
    # Exactly 41 answers reach the verifier (the manifest + 40 files), then the server is
    # stopped: deterministic whatever the machine's speed.
    proxy = CountingProxy(srv.url, limit=41, on_limit=srv.stop)
    v = Verifier(proxy.url, jobs=2, retries=1, backoff=0.01, timeout=3)
    try:
        with proxy:
            report = v.run(progress=False)
    finally:
        v.close()
        srv.stop()
    assert proxy.relayed == 41 and proxy.refused > 0
    assert not report.ok
    assert report.counts[OK] == 40 and report.total == 300
    assert report.counts[ERROR] == 260 and report.counts[MISMATCH] == 0
    assert sum(report.counts.values()) == 300
    assert all(p.status == ERROR and "attempts" in p.detail for p in report.problems)
    # And from the command line: a dead server is a one-line failure, never success.
    r = harness("files", "verify", srv.url, "--retries", "0")
    assert r.returncode != 0 and "cannot fetch the manifest" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_truncated_body_is_retried_then_reported(tmp_path: Path) -> None:
    """A server that promises 1000 bytes and sends 10 (fault injection): never a success."""
    body = b"0123456789"
    digest = hashlib.sha256(b"x" * 1000).hexdigest()
    manifest = f"{digest}  a.txt\n".encode()
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    port = srv.getsockname()[1]
    hits = []
    # Every connection is closed after one answer, and says so: otherwise a client may reuse a
    # pooled connection the server already closed, and that attempt never reaches the server.
    head = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                req = conn.recv(4096)
                hits.append(req.split(b" ")[1])
                if b"SHA256SUMS" in req:
                    conn.sendall(head % len(manifest) + manifest)
                else:
                    conn.sendall(head % 1000 + body)

    import threading

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        v = Verifier(f"http://127.0.0.1:{port}", jobs=1, retries=2, backoff=0.01, timeout=3)
        report = v.run(progress=False)
        v.close()
    finally:
        srv.close()
    assert not report.ok and report.counts[ERROR] == 1
    assert report.problems[0].attempts == 3
    assert hits.count(b"/a.txt") == 3


def test_service_shape_and_no_orphans(files_pool, files_cfg) -> None:
    for impl in ("nginx", "python"):
        from harness.files.nginx import nginx_binary

        if impl == "nginx" and nginx_binary() is None:
            continue
        srv = LocalFileServer(files_pool.root, files_cfg.files.server, impl=impl)
        srv.start()
        srv.start()  # idempotent
        assert srv.ready() and srv.url.startswith("http://127.0.0.1:")
        pgid = srv.pid
        srv.stop()
        srv.stop()  # always safe
        assert not srv.ready()
        assert not http_ok(srv.url + "/" + MANIFEST, timeout=0.5)
        # The whole group (nginx workers, uvicorn workers) is gone; zombies awaiting init's
        # reaping do not count.
        assert wait_until(lambda: not _live_in_group(pgid), 5), _live_in_group(pgid)


def _live_in_group(pgid: int) -> list[str]:
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            live.append(text[:60])
    return live


def test_backend_fixture_serves_the_pool(file_server, files_pool, backend_name) -> None:
    v = Verifier(file_server.url, jobs=4)
    try:
        report = v.run(progress=False)
    finally:
        v.close()
    assert report.ok, report.problem_lines()[:10]
    if backend_name != "external":  # an external server serves its own pool
        assert report.total == files_pool.count


def test_serve_command_stops_cleanly_on_ctrl_c(files_pool, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "files", "serve", str(files_pool.root)]
        + ["--port", str(port), "--host", "127.0.0.1", f"paths.work_dir={tmp_path}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=ROOT,
        start_new_session=True,
        preexec_fn=ctrl_c_as_from_a_terminal,
    )
    url = f"http://127.0.0.1:{port}/{MANIFEST}"
    try:
        # "serving" is printed once the server is ready; a child that never says it fails.
        lines_until(proc.stdout, lambda ln: "serving" in ln, timeout=60, what="harness files serve")
        assert http_ok(url, timeout=2)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert "stopping" in proc.stdout.read().decode()
    # The port closes once the server's workers have exited: poll for it, with a deadline.
    assert wait_until(lambda: not http_ok(url, timeout=0.5), timeout=10, interval=0.05)


@pytest.mark.parametrize("impl", ["nginx", "python"])
def test_manifest_only_pool_with_a_big_file(impl, tmp_path: Path, files_cfg, capsys) -> None:
    _need(impl, files_cfg)
    pool = make_attack_pool(tmp_path, count=20, seed=9)
    (pool.root / MANIFEST).unlink()
    # 3 MiB: beyond the fallback's one-shot size, so Starlette streams it in chunks.
    (pool.root / "big.bin").write_bytes(os.urandom(3 << 20))
    r = harness("files", "build", str(pool.root))
    assert r.returncode == 0 and "21 files" in r.stdout, r.stderr
    with LocalFileServer(pool.root, files_cfg.files.server, impl=impl) as srv:
        v = Verifier(srv.url, jobs=3, chunk_size=4096)
        report = v.run(progress=True)  # the bar goes to stderr
        v.close()
    assert report.ok and report.total == 21 and report.bytes > 3 << 20, report.summary()
    assert "21/21" in capsys.readouterr().err


@pytest.mark.docker
def test_docker_nginx_image_serves_the_pool(files_pool, files_cfg) -> None:
    from harness.services.fileserver import DockerFileServer
    from harness.testing.plugin import require_docker

    require_docker()
    with_srv = DockerFileServer(files_pool.root, files_cfg.files.server)
    with running(with_srv):
        assert raw(with_srv.url, "/link-out.txt")[0] >= 400
        v = Verifier(with_srv.url, jobs=4)
        report = v.run(progress=False)
        v.close()
    assert report.ok and report.total == files_pool.count


def test_run_demo(tmp_path: Path) -> None:
    from harness.config import compose
    from harness.files.demo import run_demo

    cfg = compose([f"paths.work_dir={tmp_path}", "files.demo.count=40"])
    lines = run_demo(cfg)
    assert "40 files served by" in lines[0] and lines[1].startswith("OK: 40 files, 40 ok")
    assert lines[2].startswith("harness verify files: 9 checks passed, 0 failed (hashes, ")
    assert not list((tmp_path / "files").glob("demo-*"))  # its pool is cleaned up
