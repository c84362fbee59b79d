"""`harness serve` and `harness client` as a user runs them (subprocesses, real server)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from harness.data.loader import load_split
from harness.services.base import http_ok, wait_until
from harness.services.triton import process_alive
from harness.serving.golden import GOLDEN_DIR, make_fixture_repository
from tests.integration._cli import harness, harness_serve

pytestmark = pytest.mark.integration


def test_serve_prints_urls_and_stops_cleanly_on_ctrl_c(triton_repository, backend_name, tmp_path):
    if backend_name != "local":
        pytest.skip("starts its own local server")
    with harness_serve(
        "--repository", str(triton_repository), env={"HARNESS_WORK_DIR": str(tmp_path)}, timeout=180
    ) as served:
        assert re.search(r"gRPC\s+127\.0\.0\.1:\d+", served.text)
        assert http_ok(served.http + "/v2/health/ready")
        server_pids = [
            int(p)
            for p in subprocess.run(
                ["pgrep", "-f", f"tritonserver.*{tmp_path}"], capture_output=True, text=True
            ).stdout.split()
        ]
        assert server_pids
        assert "stopped" in served.interrupt(timeout=30)
        assert wait_until(lambda: not any(process_alive(p) for p in server_pids), timeout=15)
        assert not http_ok(served.http + "/v2/health/ready")


def _onnxruntime_predictions(model_path, images: np.ndarray) -> np.ndarray:
    """The oracle: in-process onnxruntime on the very ONNX file the server serves."""
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    return sess.run(["logits"], {"images": images})[0].argmax(axis=1)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_client_command_reports_accuracy_and_latency(
    triton_server, triton_model, triton_golden, triton_cfg, protocol
):
    res = harness(
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
    # The same split read in-process; the client must have sent all of it, nothing else.
    split = load_split(triton_cfg, "test")
    images = split.images.astype(np.float32)[:, None] / float(triton_cfg.data.pixel_scale)
    n = int(re.search(r"client: (\d+) images", res.stdout).group(1))
    assert n == len(images), res.stdout
    expected = (_onnxruntime_predictions(triton_golden.model_path, images) == split.labels).mean()
    acc = re.search(r"accuracy: ([0-9.]+)", res.stdout).group(1)
    assert acc == f"{expected:.4f}", f"client {acc}, onnxruntime {expected:.4f}"
    assert re.search(r"latency ms p50 [0-9.]+ p90 [0-9.]+ p95 [0-9.]+ p99 [0-9.]+", res.stdout)


def test_client_command_with_images_predicts_what_onnxruntime_does(
    triton_server, triton_model, triton_golden, tmp_path
):
    # Two .npy files (20 + 30 images): the client prints every prediction up to 50.
    images = np.random.default_rng(11).random((50, 1, 28, 28), dtype=np.float32)
    images[:32] = triton_golden.images  # real digits first, seeded noise after
    np.save(tmp_path / "a.npy", images[:20])
    np.save(tmp_path / "b.npy", images[20:])
    res = harness(
        "client",
        "--url",
        triton_server.grpc_url,
        "--model",
        triton_model,
        "--images",
        str(tmp_path / "a.npy"),
        str(tmp_path / "b.npy"),
        "--batch-size",
        "16",
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "client: 50 images (2 file(s))" in res.stdout
    assert re.search(r"requests: 4 of <= 16 images", res.stdout), res.stdout
    printed = re.search(r"predicted: ([0-9 ]+)", res.stdout).group(1).split()
    expected = _onnxruntime_predictions(triton_golden.model_path, images)
    assert [int(p) for p in printed] == expected.tolist()


def test_client_command_without_url_starts_its_own_server(
    triton_cfg, triton_golden, backend_name, tmp_path
):
    if backend_name != "local":
        pytest.skip("starts its own local server")
    # Plain `harness client`: no --url, so it serves the configured repository for the run.
    repo = make_fixture_repository(triton_cfg, tmp_path / "repo")

    def client(images: Path) -> subprocess.CompletedProcess:
        return harness(
            "client",
            f"triton.repository={repo}",
            f"paths.work_dir={tmp_path / 'work'}",
            "--images",  # nargs="+": overrides go before it, as a user learns from --help
            str(images),
        )

    res = client(GOLDEN_DIR / "golden.npz")
    assert res.returncode != 0 and "cannot read image" in res.stderr  # .npz is no image
    np.save(tmp_path / "golden.npy", triton_golden.images)
    res = client(tmp_path / "golden.npy")
    assert res.returncode == 0, res.stderr
    printed = [int(p) for p in re.search(r"predicted: ([0-9 ]+)", res.stdout).group(1).split()]
    assert printed == triton_golden.predicted.tolist()
    # The server it started is gone again: no tritonserver of this run is left.
    left = subprocess.run(
        ["pgrep", "-f", f"tritonserver.*{tmp_path}"], capture_output=True, text=True
    ).stdout.split()
    assert left == []


def test_client_command_bad_input_is_one_line(triton_server, tmp_path):
    res = harness("client", "--url", triton_server.grpc_url, "--model", "no-such-model")
    assert res.returncode != 0
    assert res.stderr.strip().count("\n") == 0 and "not known or not ready" in res.stderr
    bad = tmp_path / "x.png"
    bad.write_bytes(b"not an image")
    res = harness("client", "--url", triton_server.grpc_url, "--images", str(bad))
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
