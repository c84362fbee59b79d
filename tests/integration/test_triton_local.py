"""The local backend: materialized model kinds served for real, start-up failures, no orphans."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import onnxruntime as ort
import pytest

from harness.errors import ServiceError
from harness.paths import ROOT
from harness.services.base import wait_until
from harness.services.triton import make_triton, process_alive
from harness.serving.client import TritonClient
from harness.testing.fixtures_triton import make_fixture_repository
from harness.testing.triton_repos import build_variety_repository
from tests.integration._cli import lines_until

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _local_only(backend_name):
    if backend_name != "local":
        pytest.skip("exercises the local backend (materializer, processes)")


def _tree_state(root):
    return {
        str(p.relative_to(root)): (p.is_symlink(), p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


def test_every_model_kind_is_materialized_and_served(triton_cfg, triton_golden, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="harness.serving.materialize")
    repo = build_variety_repository(tmp_path / "canonical")
    before = _tree_state(repo)
    server = make_triton(triton_cfg, "local", repo, work_dir=tmp_path / "work")
    with server:
        assert sorted(server.models) == ["echo", "mnist-ensemble", "mnist-openvino", "multi"]
        with TritonClient(server.grpc_url, "grpc") as client:
            # INT64 / FP16 / STRING through the python stand-in equal in-process onnxruntime.
            feed = {
                "ids": np.arange(12, dtype=np.int64).reshape(4, 3),
                "half": np.linspace(-2, 2, 8, dtype=np.float16).reshape(4, 2),
                "text": np.array([[b"a"], [b"bc"], ["d\u00e9".encode()], [b""]], dtype=object),
            }
            served = client.infer("multi", feed)
            sess = ort.InferenceSession(str(repo / "multi" / "1" / "model.onnx"))
            text = np.array([[x[0].decode()] for x in feed["text"]], dtype=object)
            names = ["ids_twice", "half_squared", "text_out"]
            want = sess.run(names, {"ids": feed["ids"], "half": feed["half"], "text": text})
            np.testing.assert_array_equal(served["ids_twice"], want[0])
            assert served["half_squared"].dtype == np.float16
            np.testing.assert_array_equal(served["half_squared"], want[1])
            assert [x[0].decode() for x in served["text_out"]] == [x[0] for x in want[2]]
            # OpenVINO runtime on the same ONNX file, directly and through the ensemble.
            ov = client.infer("mnist-openvino", triton_golden.images)["logits"]
            np.testing.assert_allclose(ov, triton_golden.logits, rtol=0, atol=1e-4)
            ens = client.infer("mnist-ensemble", {"pixels": triton_golden.images})["scores"]
            np.testing.assert_allclose(ens, ov, rtol=0, atol=1e-6)
            # The python model was copied as-is.
            x = np.array([[1.5, -2.0]], dtype=np.float32)
            np.testing.assert_array_equal(client.infer("echo", {"x": x})["y"], x * 2)
        runtime = (server.served_repository / "mnist-openvino" / "config.pbtxt").read_text()
        assert 'string_value: "openvino"' in runtime
    assert "skipped mnist-trt: TensorRT needs an NVIDIA GPU" in caplog.text
    assert _tree_state(repo) == before, "serving modified the canonical repository"


def test_startup_failure_surfaces_the_server_log_errors(triton_cfg, tmp_path):
    repo = make_fixture_repository(triton_cfg, tmp_path / "repo")
    (repo / triton_cfg.triton.model_name / "1" / "model.onnx").write_bytes(b"not an onnx file")
    server = make_triton(triton_cfg, "local", repo, work_dir=tmp_path / "work")
    with pytest.raises(ServiceError) as info:
        server.start()
    msg = str(info.value)
    assert "failed to start" in msg and "\n" not in msg
    assert triton_cfg.triton.model_name in msg  # the log's error line names the broken model
    assert server.pid is None or not process_alive(server.pid)


def test_clean_shutdown_leaves_no_process(triton_cfg, tmp_path):
    repo = make_fixture_repository(triton_cfg, tmp_path / "repo")
    server = make_triton(triton_cfg, "local", repo, work_dir=tmp_path / "work")
    server.start()
    pids = [server.pid, *server.stub_processes().values()]
    assert len(pids) >= 2  # the server and at least one python stub
    server.stop()
    assert wait_until(lambda: not any(process_alive(p) for p in pids), timeout=15)


def test_interrupted_run_leaves_no_orphans(triton_cfg, tmp_path):
    repo = make_fixture_repository(triton_cfg, tmp_path / "repo")
    script = textwrap.dedent(f"""
        import sys, time
        from harness.config import compose
        from harness.services.triton import make_triton
        s = make_triton(compose([]), "local", {str(repo)!r}, work_dir={str(tmp_path / "w")!r})
        s.start()
        print(s.pid, *s.stub_processes().values(), flush=True)
        time.sleep(600)
        """)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        first = lines_until(proc.stdout, lambda ln: True, timeout=180, what="the server's pids")
        pids = [int(p) for p in first[0].split()]
        assert len(pids) >= 2 and all(process_alive(p) for p in pids)
        os.kill(proc.pid, signal.SIGKILL)  # like a killed test run: no cleanup code runs
        proc.wait(timeout=10)
        assert wait_until(lambda: not any(process_alive(p) for p in pids), timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_port_taken_between_choice_and_bind_is_retried(triton_cfg, tmp_path, monkeypatch):
    import socket

    import harness.services.triton as triton

    repo = make_fixture_repository(triton_cfg, tmp_path / "repo")
    with socket.socket() as busy:  # someone else binds the gRPC port we picked
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        real, calls = triton.free_ports, []

        def first_collides(n, host="127.0.0.1"):
            calls.append(n)
            ports = real(n, host)
            return [ports[0], busy.getsockname()[1], *ports[2:]] if len(calls) == 1 else ports

        monkeypatch.setattr(triton, "free_ports", first_collides)
        with make_triton(triton_cfg, "local", repo, work_dir=tmp_path / "work") as server:
            assert len(calls) == 2 and server.ready()
            assert server.grpc_port != busy.getsockname()[1]
