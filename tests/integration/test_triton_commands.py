"""`harness serve` and `harness client` as a user runs them (subprocesses, real server)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

from harness.paths import ROOT
from harness.services.base import http_ok, wait_until
from harness.services.triton import process_alive
from tests.integration._cli import ctrl_c_as_from_a_terminal, lines_until

pytestmark = pytest.mark.integration


def _harness(*args, **kw):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], env=env, capture_output=True, text=True, **kw
    )


def test_serve_prints_urls_and_stops_cleanly_on_ctrl_c(triton_repository, backend_name, tmp_path):
    if backend_name != "local":
        pytest.skip("starts its own local server")
    env = dict(os.environ, PYTHONPATH=str(ROOT), HARNESS_WORK_DIR=str(tmp_path))
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "serve", "--repository", str(triton_repository)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=ctrl_c_as_from_a_terminal,
    )
    try:
        lines = lines_until(proc.stdout, lambda ln: "Ctrl-C" in ln, timeout=180, what="serve")
        text = "".join(lines)
        http = re.search(r"HTTP\s+(http://\S+)", text).group(1)
        assert re.search(r"gRPC\s+127\.0\.0\.1:\d+", text)
        assert http_ok(http + "/v2/health/ready")
        server_pids = [
            int(p)
            for p in subprocess.run(
                ["pgrep", "-f", f"tritonserver.*{tmp_path}"], capture_output=True, text=True
            ).stdout.split()
        ]
        assert server_pids
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=30)[0]
        assert proc.returncode == 0, rest
        assert "stopped" in rest
        assert wait_until(lambda: not any(process_alive(p) for p in server_pids), timeout=15)
        assert not http_ok(http + "/v2/health/ready")
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_client_command_reports_accuracy_and_latency(triton_server, triton_model, protocol):
    res = _harness(
        "client",
        "--url",
        triton_server.address(protocol),
        "--protocol",
        protocol,
        "--model",
        triton_model,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    n = int(re.search(r"client: (\d+) images", res.stdout).group(1))
    assert n > 0
    acc = float(re.search(r"accuracy: ([0-9.]+)", res.stdout).group(1))
    assert 0.0 <= acc <= 1.0
    assert re.search(r"latency ms p50 [0-9.]+ p90 [0-9.]+ p95 [0-9.]+ p99 [0-9.]+", res.stdout)


def test_client_command_bad_input_is_one_line(triton_server, tmp_path):
    res = _harness("client", "--url", triton_server.grpc_url, "--model", "no-such-model")
    assert res.returncode != 0
    assert res.stderr.strip().count("\n") == 0 and "not known or not ready" in res.stderr
    bad = tmp_path / "x.png"
    bad.write_bytes(b"not an image")
    res = _harness("client", "--url", triton_server.grpc_url, "--images", str(bad))
    assert res.returncode != 0 and "cannot read image" in res.stderr
    assert res.stderr.strip().count("\n") == 0


@pytest.mark.docker
def test_docker_backend_serves_the_canonical_repository(triton_cfg, triton_repository):
    from harness.testing.plugin import require_docker

    require_docker()
    from harness.services.triton import make_triton
    from harness.serving.client import TritonClient

    with make_triton(triton_cfg, "docker", triton_repository) as server:
        with TritonClient(server.grpc_url, "grpc") as client:
            assert client.model_ready(triton_cfg.triton.model_name)
