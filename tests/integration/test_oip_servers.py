"""The OIP servers of tests/integration/oip answer like in-process onnxruntime, and every
deliberate fault is observable from outside (what `harness verify inference` must catch)."""

from __future__ import annotations

import time

import numpy as np
import onnxruntime as ort
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.integration.oip.fixtures import CORRECT, FAULTY, oip_server  # noqa: F401 (fixture)
from tests.integration.oip.launchers import GOLDEN_MODEL, MODEL_NAME
from tests.integration.oip.oip_model import DIES_EXIT_CODE, SLOW_DELAY_S

pytestmark = pytest.mark.integration

GOLDEN = GOLDEN_MODEL.parent / "golden.npz"
# KServe reads a body without this header as binary tensors; tritonclient sends none by itself.
JSON_HEADERS = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """The golden images (32 x 1 x 28 x 28 FP32)."""
    return np.load(GOLDEN)["images"]


@pytest.fixture(scope="module")
def reference(images) -> np.ndarray:
    """Logits of in-process onnxruntime on the golden images."""
    sess = ort.InferenceSession(str(GOLDEN_MODEL), providers=["CPUExecutionProvider"])
    return sess.run(["logits"], {"images": images})[0]


def http_infer(server, x: np.ndarray, binary: bool) -> tuple[np.ndarray, str]:
    """Logits and answered datatype over HTTP (binary tensors or JSON)."""
    client = httpclient.InferenceServerClient(server.http_address, network_timeout=30)
    try:
        inp = httpclient.InferInput("images", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=binary)
        out = httpclient.InferRequestedOutput("logits", binary_data=binary)
        res = client.infer(
            MODEL_NAME, [inp], outputs=[out], headers=None if binary else JSON_HEADERS
        )
        return res.as_numpy("logits"), res.get_output("logits")["datatype"]
    finally:
        client.close()


def grpc_infer(server, x: np.ndarray) -> tuple[np.ndarray, str]:
    """Logits and answered datatype over gRPC."""
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        inp = grpcclient.InferInput("images", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        res = client.infer(MODEL_NAME, [inp], client_timeout=30)
        return res.as_numpy("logits"), res.get_output("logits").datatype
    finally:
        client.close()


def json_body(shape, datatype="FP32", name="images", n=None) -> dict:
    """A v2 JSON inference request of zeros (n values, default: as many as the shape holds)."""
    count = int(np.prod(shape)) if n is None else n
    return {
        "inputs": [
            {"name": name, "datatype": datatype, "shape": list(shape), "data": [0.0] * count}
        ]
    }


# ------------------------------------------------------------------------------- correct
@pytest.mark.parametrize("kind", CORRECT)
def test_http_answers_equal_onnxruntime(oip_server, kind, images, reference):  # noqa: F811
    server = oip_server(kind)
    encodings = [False] if kind == "mlserver" else [True, False]  # MLServer: JSON only
    for binary in encodings:
        logits, datatype = http_infer(server, images, binary)
        assert datatype == "FP32"
        np.testing.assert_allclose(logits, reference, rtol=0, atol=1e-5, err_msg=f"binary={binary}")


@pytest.mark.parametrize("kind", CORRECT)
def test_grpc_answers_equal_onnxruntime(oip_server, kind, images, reference):  # noqa: F811
    server = oip_server(kind)
    assert server.grpc_url is not None
    logits, datatype = grpc_infer(server, images)
    assert datatype == "FP32"
    np.testing.assert_allclose(logits, reference, rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", CORRECT)
def test_metadata_declares_input_and_output(oip_server, kind):  # noqa: F811
    server = oip_server(kind)
    assert server.url.startswith("http://127.0.0.1:")
    meta = requests.get(f"{server.url}/v2/models/{MODEL_NAME}", timeout=10).json()
    tensors = {t["name"]: (t["datatype"], t["shape"]) for t in meta["inputs"] + meta["outputs"]}
    assert tensors == {"images": ("FP32", [-1, 1, 28, 28]), "logits": ("FP32", [-1, 10])}


BAD_REQUESTS = {
    "wrong_shape": json_body([1, 1, 28, 27]),
    "wrong_dtype": json_body([1, 1, 28, 28], datatype="FP64"),
    "unknown_input": json_body([1, 1, 28, 28], name="pixels"),
    "empty_batch": json_body([0, 1, 28, 28]),
    "batch_over_64": json_body([65, 1, 28, 28]),
}


@pytest.mark.parametrize("kind", CORRECT)
def test_bad_requests_get_4xx_and_the_server_lives_on(oip_server, kind):  # noqa: F811
    server = oip_server(kind)
    url = f"{server.url}/v2/models/{MODEL_NAME}/infer"
    codes = {
        case: requests.post(url, json=body, timeout=10).status_code
        for case, body in BAD_REQUESTS.items()
    }
    assert all(400 <= code < 500 for code in codes.values()), codes
    assert server.ready()


# -------------------------------------------------------------------------------- faults
def test_faults_sit_on_servers_that_can_show_them():
    assert set(FAULTY) == {
        "wrong_weights",
        "swapped_rows",
        "wrong_dtype",
        "dies_on_bad_input",
        "slow",
    }
    assert FAULTY["dies_on_bad_input"] in ("mlserver", "kserve")
    assert FAULTY["wrong_dtype"] in ("mlserver", "kserve")


def _binary(kind: str) -> bool:
    return kind != "mlserver"


def test_wrong_weights_answer_differently(oip_server, images, reference):  # noqa: F811
    kind = FAULTY["wrong_weights"]
    server = oip_server(kind, "wrong_weights")
    logits, datatype = http_infer(server, images, _binary(kind))
    assert datatype == "FP32" and logits.shape == reference.shape
    # The untrained golden logits are ~0.1 in size: 1e-2 is 1000x the checks' 1e-5 tolerance.
    assert np.abs(logits - reference).max() > 1e-2
    grpc_logits, _ = grpc_infer(server, images)
    np.testing.assert_allclose(grpc_logits, logits, rtol=0, atol=1e-5)  # deterministic noise


def test_swapped_rows_show_with_batch_two_only(oip_server, images, reference):  # noqa: F811
    kind = FAULTY["swapped_rows"]
    server = oip_server(kind, "swapped_rows")
    one, _ = http_infer(server, images[:1], _binary(kind))
    np.testing.assert_allclose(one, reference[:1], rtol=0, atol=1e-5)
    two, _ = http_infer(server, images[:2], _binary(kind))
    assert np.abs(two - reference[:2]).max() > 1e-3
    np.testing.assert_allclose(two, reference[1::-1], rtol=0, atol=1e-5)
    two_grpc, _ = grpc_infer(server, images[:2])
    np.testing.assert_allclose(two_grpc, reference[1::-1], rtol=0, atol=1e-5)


def test_wrong_dtype_answers_fp64_while_metadata_says_fp32(
    oip_server, images, reference  # noqa: F811
):
    kind = FAULTY["wrong_dtype"]
    server = oip_server(kind, "wrong_dtype")
    meta = requests.get(f"{server.url}/v2/models/{MODEL_NAME}", timeout=10).json()
    assert meta["outputs"][0]["datatype"] == "FP32"
    for logits, datatype in (http_infer(server, images, _binary(kind)), grpc_infer(server, images)):
        assert datatype == "FP64" and logits.dtype == np.float64
        np.testing.assert_allclose(logits, reference, rtol=0, atol=1e-5)


def test_dies_on_bad_input_is_gone_after_a_bad_request(oip_server, images, reference):  # noqa: F811
    kind = FAULTY["dies_on_bad_input"]
    server = oip_server(kind, "dies_on_bad_input")
    logits, _ = http_infer(server, images, _binary(kind))
    np.testing.assert_allclose(logits, reference, rtol=0, atol=1e-5)
    url = f"{server.url}/v2/models/{MODEL_NAME}/infer"
    with pytest.raises(requests.ConnectionError):
        requests.post(url, json=BAD_REQUESTS["wrong_shape"], timeout=10)
    deadline = time.monotonic() + 10
    while server.running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.returncode() == DIES_EXIT_CODE
    assert not server.ready()
    # tritonclient.http (gevent) raises ConnectionRefusedError: an OSError, like requests' own.
    with pytest.raises((OSError, InferenceServerException)):
        http_infer(server, images[:1], _binary(kind))


def test_slow_answers_correctly_but_takes_50ms(oip_server, images, reference):  # noqa: F811
    kind = FAULTY["slow"]
    server = oip_server(kind, "slow")
    client = httpclient.InferenceServerClient(server.http_address)
    try:
        inp = httpclient.InferInput("images", [1, 1, 28, 28], "FP32")
        inp.set_data_from_numpy(images[:1])
        latencies = []
        for _ in range(5):
            t0 = time.perf_counter()
            res = client.infer(MODEL_NAME, [inp])
            latencies.append(time.perf_counter() - t0)
            np.testing.assert_allclose(res.as_numpy("logits"), reference[:1], rtol=0, atol=1e-5)
    finally:
        client.close()
    assert min(latencies) >= SLOW_DELAY_S
