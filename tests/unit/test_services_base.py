"""LocalProcess: healthy start, clear failure with the log, and no orphans after stop; the one
heuristic every backend uses to pick error lines out of a log."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from harness.errors import ServiceError
from harness.services import ExternalService, LocalProcess, free_port, http_ok
from harness.services.base import error_lines, last_line
from tests.integration._cli import lines_until


def _http_server(port: int, tmp_path) -> LocalProcess:
    return LocalProcess(
        "http.server",
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        url=f"http://127.0.0.1:{port}",
        ready_check=lambda: http_ok(f"http://127.0.0.1:{port}/"),
        log_path=tmp_path / "server.log",
        cwd=tmp_path,
        startup_timeout=20,
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purposes.
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().split()[2] != "Z"


def test_start_ready_stop(tmp_path) -> None:
    port = free_port()
    svc = _http_server(port, tmp_path)
    with svc:
        assert svc.ready()
        assert http_ok(svc.url + "/")
        pid = svc.pid
        assert os.getpgid(pid) == pid  # own process group
        svc.start()  # idempotent
        assert svc.pid == pid
    assert not svc.running()
    assert not http_ok(f"http://127.0.0.1:{port}/", timeout=0.5)
    svc.stop()  # always safe


def test_stop_kills_the_whole_process_group(tmp_path) -> None:
    # The service spawns a grandchild that ignores SIGTERM; stop() must still leave nothing.
    script = (
        "import subprocess, sys, http.server\n"
        "child = subprocess.Popen([sys.executable, '-c', "
        "'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)'])\n"
        "open('child.pid', 'w').write(str(child.pid))\n"
        "http.server.test(HandlerClass=http.server.SimpleHTTPRequestHandler, port={port}, "
        "bind='127.0.0.1')\n"
    )
    port = free_port()
    svc = LocalProcess(
        "spawner",
        [sys.executable, "-c", script.replace("{port}", str(port))],
        url=f"http://127.0.0.1:{port}",
        ready_check=lambda: http_ok(f"http://127.0.0.1:{port}/"),
        log_path=tmp_path / "spawner.log",
        cwd=tmp_path,
        startup_timeout=20,
        stop_timeout=2,
    )
    svc.start()
    child = int((tmp_path / "child.pid").read_text())
    assert _alive(child)
    svc.stop()
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child)


def test_failed_start_names_the_error_and_the_log(tmp_path) -> None:
    svc = LocalProcess(
        "broken",
        [sys.executable, "-c", "import sys; print('ERROR: port is invalid'); sys.exit(3)"],
        url="http://127.0.0.1:1",
        ready_check=lambda: False,
        log_path=tmp_path / "broken.log",
        startup_timeout=10,
    )
    with pytest.raises(ServiceError) as exc:
        svc.start()
    msg = str(exc.value)
    assert "broken failed to start (exited with code 3)" in msg
    assert "ERROR: port is invalid" in msg
    assert str(tmp_path / "broken.log") in msg
    assert "\n" not in msg
    assert not svc.running()


LOG = """
I1202 loading model 'a'
E1202 failed to load 'a': Invalid argument: unexpected shape
I1202 retrying
W1202 Unable to open file b.onnx
Fatal: nothing left to serve

"""


def test_error_lines_keep_the_last_errors_in_one_line() -> None:
    """Lines with an error word, newest last, '; '-joined; a limit keeps the newest ones."""
    assert error_lines(LOG) == (
        "E1202 failed to load 'a': Invalid argument: unexpected shape; "
        "W1202 Unable to open file b.onnx; Fatal: nothing left to serve"
    )
    assert error_lines(LOG, 1) == "Fatal: nothing left to serve"
    assert error_lines(LOG, 0) == ""


def test_error_lines_fallback_is_the_last_line() -> None:
    """Without an error word: '' (a log), or the last line with or_last (compose's stderr)."""
    quiet = "pulling image\nservice minio-nit: undefined\n\n"
    assert error_lines(quiet) == ""
    assert error_lines(quiet, 1, or_last=True) == "service minio-nit: undefined"
    assert error_lines("  \n", or_last=True) == "" and last_line("") == ""
    assert last_line(quiet) == "service minio-nit: undefined"


def test_missing_binary_is_a_service_error(tmp_path) -> None:
    svc = LocalProcess(
        "ghost",
        ["/nonexistent/binary"],
        url="http://127.0.0.1:1",
        ready_check=lambda: False,
        log_path=tmp_path / "ghost.log",
    )
    with pytest.raises(ServiceError, match="ghost: cannot run /nonexistent/binary"):
        svc.start()


def test_child_dies_with_its_parent(tmp_path) -> None:
    # A harness process killed with SIGKILL cannot run cleanup: the kernel must end the service.
    port = free_port()
    code = (
        "import sys, time\n"
        "from harness.services import LocalProcess, http_ok\n"
        f"svc = LocalProcess('s', [sys.executable, '-m', 'http.server', '{port}', '--bind', "
        f"'127.0.0.1'], url='', ready_check=lambda: http_ok('http://127.0.0.1:{port}/'), "
        f"log_path=r'{tmp_path}/s.log')\n"
        "svc.start(); print(svc.pid, flush=True); time.sleep(300)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        child = int(lines_until(parent.stdout, lambda ln: True, timeout=60, what="child pid")[0])
    except AssertionError:
        parent.kill()
        raise
    assert _alive(child)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child)


def test_external_service_reports_unreachable_url() -> None:
    svc = ExternalService("remote", f"http://127.0.0.1:{free_port()}", "/health", timeout=1)
    assert not svc.ready()
    with pytest.raises(ServiceError, match="remote: no answer at http://127.0.0.1"):
        svc.start()
