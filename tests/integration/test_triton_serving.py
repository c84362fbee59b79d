"""The real tritonserver serving the fixture classifier: endpoints, golden answers, parity with
in-process onnxruntime, dynamic batching, instance groups, bad input. Runs on any --backend."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort
import pytest

from harness.errors import HarnessError, ServiceError
from harness.perf.tune import Variant
from harness.services.base import free_port
from harness.serving.client import TritonClient, softmax

pytestmark = pytest.mark.integration


def test_health_metadata_and_config_endpoints(triton_client, triton_model):
    assert triton_client.server_ready()
    assert triton_client.model_ready(triton_model)
    meta = triton_client.metadata(triton_model)
    assert [(t["name"], t["datatype"]) for t in meta["inputs"]] == [("images", "FP32")]
    assert [int(d) for d in meta["inputs"][0]["shape"]] == [-1, 1, 28, 28]
    assert [(t["name"], t["datatype"]) for t in meta["outputs"]] == [("logits", "FP32")]
    config = triton_client.config(triton_model)
    assert int(config["max_batch_size"]) > 0
    assert "dynamic_batching" in config


def test_golden_outputs(triton_client, triton_model, triton_golden, triton_cfg):
    got = triton_client.classify(triton_model, triton_golden.images)
    atol = triton_cfg.triton.test.golden_atol
    np.testing.assert_allclose(got.logits, triton_golden.logits, rtol=0, atol=atol)
    np.testing.assert_array_equal(got.labels, triton_golden.predicted)
    np.testing.assert_allclose(got.probabilities.sum(axis=1), 1.0, atol=1e-6)


def test_served_equals_inprocess_onnxruntime(
    triton_client, triton_model, triton_golden, triton_cfg
):
    # 150 seeded images: more than max_batch_size, so the client has to chunk.
    images = np.random.default_rng(7).random((150, 1, 28, 28), dtype=np.float32)
    session = ort.InferenceSession(
        str(triton_golden.model_path), providers=["CPUExecutionProvider"]
    )
    expected = session.run(["logits"], {"images": images})[0]
    info = triton_client.info(triton_model)
    assert info.max_batch_size < len(images)
    served = triton_client.infer(triton_model, images)["logits"]
    assert served.shape == expected.shape
    np.testing.assert_allclose(served, expected, rtol=0, atol=triton_cfg.triton.test.parity_atol)
    np.testing.assert_array_equal(served.argmax(1), expected.argmax(1))


def _concurrent_single_requests(server, model, images, threads):
    local = threading.local()
    clients = []

    def one(i):
        if not hasattr(local, "client"):  # one connection per thread, reused
            local.client = TritonClient(server.grpc_url, "grpc")
            clients.append(local.client)
        return i, local.client.infer(model, images[i : i + 1])["logits"][0]

    try:
        with ThreadPoolExecutor(threads) as pool:
            return dict(pool.map(one, range(len(images))))
    finally:
        for c in clients:
            c.close()


def test_dynamic_batching_is_proven_by_statistics(triton_server, triton_model, triton_cfg):
    n = int(triton_cfg.triton.test.load_requests)
    images = np.random.default_rng(1).random((n, 1, 28, 28), dtype=np.float32)
    with TritonClient(triton_server.grpc_url, "grpc") as client:
        before = client.statistics(triton_model)
        answers = _concurrent_single_requests(
            triton_server, triton_model, images, int(triton_cfg.triton.test.load_threads)
        )
        after = client.statistics(triton_model)
        expected = client.infer(triton_model, images)["logits"]
    inferences = after["inference_count"] - before["inference_count"]
    executions = after["execution_count"] - before["execution_count"]
    # An external server may see other traffic too; our own servers see exactly ours.
    assert inferences == n if triton_server.backend != "external" else inferences >= n
    assert executions < inferences, f"{executions} executions for {inferences} inferences"
    # Batched answers are the same as unbatched ones (split back to the right request).
    got = np.stack([answers[i] for i in range(n)])
    np.testing.assert_allclose(got, expected, rtol=0, atol=triton_cfg.triton.test.parity_atol)


def _compute_seconds(stats: dict) -> float:
    """Total time the model spent executing batches (compute_infer over every batch size)."""
    return sum(int(b["compute_infer"]["ns"]) for b in stats["batch_stats"]) / 1e9


def _overlap(server, model: str, images: np.ndarray, requests: int, threads: int) -> float:
    """Seconds of model execution per second of wall time under concurrent batch requests.

    One instance executes one batch at a time, so this is at most 1.0 for it whatever the
    load; above 1.0 two executions overlapped: more than one instance is serving. Triton's own
    statistics say so on every backend, the process table is not needed.
    """
    local, clients = threading.local(), []

    def one(_: int) -> np.ndarray:
        if not hasattr(local, "client"):
            local.client = TritonClient(server.grpc_url, "grpc")
            clients.append(local.client)
        return local.client.infer(model, images)["logits"]

    with TritonClient(server.grpc_url, "grpc") as client:
        before = _compute_seconds(client.statistics(model))
        start = time.perf_counter()
        try:
            with ThreadPoolExecutor(threads) as pool:
                answers = list(pool.map(one, range(requests)))
        finally:
            for c in clients:
                c.close()
        wall = time.perf_counter() - start
        busy = _compute_seconds(client.statistics(model)) - before
    expected = answers[0]
    assert all(np.array_equal(a, expected) for a in answers), "instances answered differently"
    return busy / wall


def test_instance_group_count_two(triton_server, triton_model, triton_reload, triton_cfg):
    config = triton_reload(Variant(True, 100, 2, 1))
    assert [int(g["count"]) for g in config["instance_group"]] == [2]
    images = np.random.default_rng(2).random((64, 1, 28, 28), dtype=np.float32)
    # Every backend: executions overlapped in time (measured here: ~1.7 with two instances,
    # 0.83-0.90 with one, at 8 threads x batch 64 on 2 cores).
    overlap = max(_overlap(triton_server, triton_model, images, 200, 8) for _ in range(2))
    assert overlap > 1.0, f"{overlap:.2f} s of execution per s: batches never ran in parallel"
    if triton_server.backend != "local":
        return  # the stubs below are python-backend processes of a local server
    stubs = {k: v for k, v in triton_server.stub_processes().items() if triton_model in k}
    assert len(stubs) == 2, stubs
    cpu_before = {k: _cpu_ticks(pid) for k, pid in stubs.items()}
    for _ in range(3):
        _concurrent_single_requests(triton_server, triton_model, images, 16)
        used = {k: _cpu_ticks(pid) - cpu_before[k] for k, pid in stubs.items()}
        if all(v > 0 for v in used.values()):
            break
    # Both instances' processes did work under concurrent load: two instances are serving.
    assert all(v > 0 for v in used.values()), used


def test_one_instance_never_overlaps(triton_server, triton_model, triton_reload):
    """The oracle of the test above: one instance stays at or below 1.0 under the same load."""
    triton_reload(Variant(True, 100, 1, 1))
    images = np.random.default_rng(2).random((64, 1, 28, 28), dtype=np.float32)
    overlap = _overlap(triton_server, triton_model, images, 200, 8)
    assert overlap <= 1.0, overlap


def _cpu_ticks(pid: int) -> int:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[-1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


@pytest.mark.parametrize(
    "case, match",
    [
        ("shape", "shape"),
        ("dtype", "dtype"),
        ("unknown_model", "not known or not ready"),
        ("empty", "empty batch"),
        ("server_side_shape", "inference on"),
    ],
)
def test_bad_input_is_a_clear_error_and_server_keeps_serving(
    triton_client, triton_model, triton_golden, case, match
):
    images = triton_golden.images[:4]
    with pytest.raises(HarnessError, match=match) as info:
        if case == "shape":
            triton_client.infer(triton_model, images.reshape(4, 28, 28))
        elif case == "dtype":
            triton_client.infer(triton_model, images.astype(np.float64))
        elif case == "unknown_model":
            triton_client.infer("no-such-model", images)
        elif case == "empty":
            triton_client.infer(triton_model, images[:0])
        else:  # skip client-side checks: the server itself must reject it
            triton_client.infer(triton_model, images.reshape(4, 1, 784), validate=False)
    assert "\n" not in str(info.value)
    logits = triton_client.infer(triton_model, images)["logits"]
    np.testing.assert_allclose(logits, triton_golden.logits[:4], atol=1e-5, rtol=0)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_server_down_is_a_clear_error(protocol):
    client = TritonClient(f"127.0.0.1:{free_port()}", protocol, timeout_s=3, connect_timeout_s=3)
    start = time.monotonic()
    with pytest.raises(ServiceError, match="not reachable"):
        client.infer("mnist-onnx", np.zeros((1, 1, 28, 28), np.float32))
    assert time.monotonic() - start < 10
    client.close()


def test_probabilities_match_softmax_of_logits(triton_client, triton_model, triton_golden):
    got = triton_client.classify(triton_model, triton_golden.images[:8])
    np.testing.assert_allclose(got.probabilities, softmax(got.logits.astype(np.float64)), atol=1e-6)


def test_null_model_answers_zeros_and_reload_restores_the_model(
    triton_client, triton_model, triton_golden, triton_reload, triton_cfg
):
    # The perf tier's ceiling measurement swaps this model in and out; both halves must hold.
    from harness.perf.ceiling import load_null_model, serves_with_python

    served = triton_client.config(triton_model)
    if not serves_with_python(served):
        pytest.skip(f"the ceiling applies to python-backend models; this one is {served}")
    load_null_model(triton_client, triton_model, served)
    out = triton_client.infer(triton_model, triton_golden.images[:5])
    assert [(k, v.shape, v.dtype) for k, v in out.items()] == [("logits", (5, 10), np.float32)]
    assert not out["logits"].any()
    triton_reload(None)
    got = triton_client.classify(triton_model, triton_golden.images)
    atol = float(triton_cfg.triton.test.golden_atol)
    np.testing.assert_allclose(got.logits, triton_golden.logits, rtol=0, atol=atol)
